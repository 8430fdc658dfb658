"""Each service's settings are a class of its own on the common ones: same variables, same refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingest.settings import IngestSettings
from services.scorer.settings import ScorerSettings
from shared.platform.settings import Settings, get_settings

INGEST_VARS = {"INGEST_KAFKA_TIMEOUT", "INGEST_RATE_LIMIT", "INGEST_RATE_LIMIT_STORAGE", "INGEST_MAX_BATCH",
               "INGEST_MAX_BODY_BYTES", "INGEST_IDEMPOTENCY_TTL_HOURS", "INGEST_PURGE_EVERY"}
SCORER_VARS = {"SCORER_GROUP", "SCORER_BATCH_MAX", "SCORER_BATCH_WAIT", "SCORER_CHECK_CRCS", "SCORER_COMMIT_TIMEOUT",
               "SCORER_SHOW_SLACK_POSTS", "SCORER_SHOW_OWNERS", "SCORER_READ_TIMEOUT",
               "NOTIFIER_ALERT_WINDOWS"}  # the notifier's own: the board projects its alert windows


def aliases(kind) -> set[str]:
    return {field.alias for field in kind.model_fields.values() if field.alias}


def test_each_service_reads_its_own_variables_and_the_common_ones():
    common = aliases(Settings)
    assert aliases(IngestSettings) == common | INGEST_VARS
    assert aliases(ScorerSettings) == common | SCORER_VARS
    assert not common & (INGEST_VARS | SCORER_VARS), "a service's own setting is in the common ones"


def test_a_service_reads_its_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("INGEST_MAX_BATCH", "7")
    monkeypatch.setenv("SCORER_GROUP", "scorers-of-somerville")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")
    get_settings.cache_clear()
    try:
        ingest, scorer = get_settings(IngestSettings), get_settings(ScorerSettings)
        assert (ingest.max_batch, ingest.database_url) == (7, "sqlite:///elsewhere.db")
        assert (scorer.scorer_group, scorer.database_url) == ("scorers-of-somerville", "sqlite:///elsewhere.db")
        assert get_settings(IngestSettings) is ingest  # read once per process
        assert type(get_settings()) is Settings
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("kind", [IngestSettings, ScorerSettings])
@pytest.mark.parametrize(("env", "field", "reason"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_MECHANISM", "required"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/c.pem"}, "KAFKA_SSL_KEYFILE", "needs its key"),
])
def test_a_service_refuses_what_the_common_settings_refuse(kind, env, field, reason):
    with pytest.raises(ValidationError) as refused:
        kind(**env)
    assert field in str(refused.value) and reason in str(refused.value)


@pytest.mark.parametrize(("kind", "env", "field"), [
    (IngestSettings, {"INGEST_MAX_BATCH": "0"}, "INGEST_MAX_BATCH"),
    (ScorerSettings, {"SCORER_BATCH_WAIT": "0"}, "SCORER_BATCH_WAIT"),
])
def test_a_service_refuses_its_own_out_of_range_values_naming_them(kind, env, field):
    with pytest.raises(ValidationError) as refused:
        kind(**env)
    assert field in str(refused.value)
