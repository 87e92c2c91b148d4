from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integrations.providers.bitbucket_dc.tls import MAX_PEM_BYTES, CertificateError, ca_pem_validate


def certificate_pem(*, ca: bool, days: int = 365, starts_in_days: int = -1) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA" if ca else "leaf")])
    start = datetime.now(UTC) + timedelta(days=starts_in_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_a_valid_ca_is_accepted():
    (certificate,) = ca_pem_validate(certificate_pem(ca=True))
    assert certificate.subject.rfc4514_string() == "CN=Test CA"


def test_a_bundle_of_cas_is_accepted():
    assert len(ca_pem_validate(certificate_pem(ca=True) + certificate_pem(ca=True))) == 2


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        ("", "empty"),
        ("garbage", "Not a PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "could not be parsed"),
        ("x" * (MAX_PEM_BYTES + 1), "larger than 64 KiB"),
    ],
)
def test_malformed_input_is_refused_with_its_reason(pem, reason):
    with pytest.raises(CertificateError, match=reason):
        ca_pem_validate(pem)


def test_a_leaf_certificate_is_refused():
    with pytest.raises(CertificateError, match="not a CA certificate"):
        ca_pem_validate(certificate_pem(ca=False))


def test_an_expired_ca_is_refused():
    with pytest.raises(CertificateError, match="expired"):
        ca_pem_validate(certificate_pem(ca=True, days=10, starts_in_days=-30))


def test_a_ca_not_yet_valid_is_refused():
    with pytest.raises(CertificateError, match="not valid before"):
        ca_pem_validate(certificate_pem(ca=True, starts_in_days=5))
