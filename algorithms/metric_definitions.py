"""Print an algorithm's MetricDefinitions for CreateTrainingJob's AlgorithmSpecification.

python -m algorithms.metric_definitions xgboost > metric-definitions.json
"""

from __future__ import annotations

import json
import sys

from algorithms import metrics, registry

# CreateTrainingJob's limits on AlgorithmSpecification.MetricDefinitions.
MAX_DEFINITIONS = 40
MAX_NAME = 255
MAX_REGEX = 500


def definitions(algorithm: str) -> list[dict[str, str]]:
    """Both algorithms log the same metrics through algorithms.metrics (no plug-in import: xgboost is slow)."""
    if algorithm not in registry.NAMES:
        raise KeyError(algorithm)
    return metrics.metric_definitions()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m algorithms.metric_definitions {{{'|'.join(registry.NAMES)}}}"
    if len(args) != 1 or args[0] not in registry.NAMES:
        received = f"received {' '.join(args)!r}" if args else "received no argument"
        print(f"{usage}\nerror: {received}", file=sys.stderr)
        return 2
    print(json.dumps(definitions(args[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
