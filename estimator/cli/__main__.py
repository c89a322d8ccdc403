"""``python -m estimator.cli``: the same as the ``joules-estimate`` console script."""

from estimator.cli.main import main

main()
