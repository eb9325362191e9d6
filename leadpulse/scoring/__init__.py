"""The pure scoring core: rules, contact state and the engine. Imports nothing from Kafka or Faust."""


def is_compiled() -> bool:
    """Whether this is the compiled build of the core (mypyc; leadpulse/core.py): the worker
    says which at start, and a benchmark labelled compiled checks it."""
    from leadpulse.scoring import engine

    return not engine.__file__.endswith(".py")
