"""What redacting personal data costs the prediction server's request log: `LogRedactor` on 1000
penguins instances next to `json.dumps` of the same instances (the log's other per-request cost),
with distinct strings (nothing cached) and with repeated category values (the usual case).

    .venv/bin/python benchmarks/log_redaction.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops.config import PrivacyConfig  # noqa: E402
from mlops.privacy import LogRedactor, redact_text  # noqa: E402

INSTANCE = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "year": 2007,
    "island": "Torgersen",
    "sex": "male",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20)
    repeat = parser.parse_args().repeat
    redactor = LogRedactor(PrivacyConfig(), salt="")
    distinct = [dict(INSTANCE, island=f"Torgersen {i}") for i in range(1000)]
    repeated = [INSTANCE] * 1000

    def per_call_ms(call) -> float:  # noqa: ANN001
        return timeit.timeit(call, number=repeat) / repeat * 1e3

    redact_text.cache_clear()
    print(
        f"redact 1000 instances, distinct strings:   {per_call_ms(lambda: [redactor.instance(i) for i in distinct]):7.2f} ms"
    )  # noqa: E501
    print(
        f"redact 1000 instances, repeated categories: {per_call_ms(lambda: [redactor.instance(i) for i in repeated]):7.2f} ms"
    )  # noqa: E501
    print(
        f"json.dumps of the same 1000 instances:      {per_call_ms(lambda: json.dumps(distinct)):7.2f} ms"
    )  # noqa: E501
    text = "paid 12.50 USD on 2013-01-05 10:30:00, card ending 1111, no contact given " * 2

    def uncached() -> str:
        redact_text.cache_clear()
        return redact_text(text)

    print(
        f"one uncached {len(text)}-char string with digits: {per_call_ms(uncached) * 1e3:7.1f} us"
    )


if __name__ == "__main__":
    main()
