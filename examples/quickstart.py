"""Quickstart: a tiny nbflow flow.

Run it from a terminal::

    nbflow run -p examples/quickstart.py                  # n = 10, one thread
    nbflow run -p examples/quickstart.py --param n=100    # another parameter value
    nbflow run -p examples/quickstart.py --executor local-dask   # on Dask's threads

or as a script, ``python examples/quickstart.py``.

Calling a task inside ``with Flow(...)`` does not run it: it adds the task to
the flow, with an edge from every task among its arguments. ``square.map``
adds one ``square`` per number, and they can run in parallel.
"""

from nbflow import Flow, Parameter, task


@task
def load_numbers(n):
    """Stand in for loading data: the numbers 1 to n."""
    return list(range(1, n + 1))


@task
def square(x):
    """Square one number (mapped: one task run per number)."""
    return x * x


@task
def total(values):
    """Add up all the squares."""
    return sum(values)


with Flow("quickstart") as flow:
    n = Parameter("n", default=10)
    numbers = load_numbers(n)
    squares = square.map(numbers)
    result = total(squares)


if __name__ == "__main__":
    state = flow.run()
    print(f"Sum of the squares of 1..10: {state.result[result].result}")
