"""Small picklable helpers for tests that start processes."""


def spin() -> None:
    while True:
        pass
