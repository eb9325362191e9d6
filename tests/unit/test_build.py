"""The pure Python core is the reference the suite tests; the compiled build (setup.py) is opt-in."""

from leadpulse.scoring import is_compiled


def test_the_suite_runs_the_pure_python_core_not_a_compiled_build_left_in_the_checkout():
    assert not is_compiled(), "compiled modules (*.so) in leadpulse/ shadow the sources: remove them"
