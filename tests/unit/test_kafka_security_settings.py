"""KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* become kafka-python's arguments, or a refusal naming the setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.platform.kafka import kafka_security
from shared.platform.settings import Settings


def test_plaintext_by_default():
    assert kafka_security(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_scram_over_tls_with_a_ca_file():
    settings = Settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                        KAFKA_SASL_USERNAME="cityscore", KAFKA_SASL_PASSWORD="s3cret",
                        KAFKA_SSL_CAFILE="/etc/kafka/ca.pem")
    assert kafka_security(settings) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "cityscore",
        "sasl_plain_password": "s3cret", "ssl_cafile": "/etc/kafka/ca.pem", "ssl_certfile": None,
        "ssl_keyfile": None, "ssl_password": None, "ssl_check_hostname": True}
    assert "s3cret" not in repr(settings)  # the password is a secret: never in a log of the settings


def test_mutual_tls():
    settings = Settings(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERTFILE="/c.pem", KAFKA_SSL_KEYFILE="/k.pem",
                        KAFKA_SSL_PASSWORD="kp")
    config = kafka_security(settings)
    assert config["security_protocol"] == "SSL"
    assert (config["ssl_certfile"], config["ssl_keyfile"], config["ssl_password"]) == ("/c.pem", "/k.pem", "kp")
    assert "sasl_mechanism" not in config


@pytest.mark.parametrize(("env", "field", "reason"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_MECHANISM", "required"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": "p"},
     "KAFKA_SASL_USERNAME", "required"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"},
     "KAFKA_SASL_PASSWORD", "required"),
    ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME", "does not use SASL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p", "KAFKA_SSL_CAFILE": "/ca.pem"}, "KAFKA_SSL_CAFILE", "does not use TLS"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/c.pem"}, "KAFKA_SSL_KEYFILE", "needs its key"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
])
def test_incomplete_or_contradictory_security_is_refused_naming_the_setting(env, field, reason):
    with pytest.raises(ValidationError) as refused:
        Settings(**env)
    message = str(refused.value)
    assert field in message and reason in message
    assert "p'" not in message and "s3cret" not in message  # the input (passwords) is not echoed
