"""Cloud DLP (Sensitive Data Protection) inspection of a tabular source, as a second opinion
beside `mlops.privacy`'s own detector: a sample of the rows goes to `inspect_content` as a table
item with the source's column headers, and each finding names its column (`field_id`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops.config import DlpConfig

if TYPE_CHECKING:
    import pandas as pd


def inspect_request(frame: pd.DataFrame, settings: DlpConfig, project: str) -> dict[str, Any]:
    """The InspectContentRequest (as a dict) for the first `settings.sample_rows` rows: every
    value as text, a missing value as an empty string."""
    sample = frame.head(settings.sample_rows).astype("string").fillna("")
    rows = [
        {"values": [{"string_value": value} for value in record]}
        for record in sample.itertuples(index=False, name=None)
    ]
    return {
        "parent": f"projects/{project}/locations/global",
        "inspect_config": {
            "info_types": [{"name": name} for name in settings.info_types],
            "min_likelihood": settings.min_likelihood,
            "limits": {"max_findings_per_request": settings.max_findings},
            "include_quote": False,  # the findings must not carry the personal data back
        },
        "item": {"table": {"headers": [{"name": str(c)} for c in frame.columns], "rows": rows}},
    }


def dlp_findings(
    frame: pd.DataFrame, settings: DlpConfig, project: str, client: Any = None
) -> dict[str, str]:
    """{column: "<INFO_TYPE> (Cloud DLP)"} for every column DLP finds personal data in (the info
    type found most often when there are several)."""
    from collections import Counter

    from google.cloud import dlp_v2

    client = client or dlp_v2.DlpServiceClient()
    response = client.inspect_content(request=inspect_request(frame, settings, project))
    counts: dict[str, Counter[str]] = {}
    for finding in response.result.findings:
        for location in finding.location.content_locations:
            column = location.record_location.field_id.name
            if column:
                counts.setdefault(column, Counter())[finding.info_type.name] += 1
    return {column: f"{found.most_common(1)[0][0]} (Cloud DLP)" for column, found in counts.items()}
