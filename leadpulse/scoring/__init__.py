"""The pure scoring core: rules, contact state and the engine. Imports nothing from Kafka or Faust."""


def is_compiled() -> bool:
    """Whether this is the opt-in mypyc build of the core (setup.py, LEADPULSE_COMPILE=1):
    the worker says so at start, and a benchmark labelled compiled checks it."""
    from leadpulse.scoring import engine

    return not engine.__file__.endswith(".py")
