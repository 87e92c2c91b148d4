"""Private CA certificates for Bitbucket Data Center instances.

An admin pastes a PEM; it is accepted only when it holds valid CA certificates (BasicConstraints
CA=true, inside their validity period). It is then *added* to the trust store of the HTTPS
client; nothing anywhere turns verification off.
"""

from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

MAX_PEM_BYTES = 64 * 1024


class CertificateError(ValueError):
    pass


def ca_pem_validate(pem: str, *, now: datetime | None = None) -> list[x509.Certificate]:
    """Parse and check a CA bundle; raises :class:`CertificateError` with the reason."""
    if not isinstance(pem, str) or not pem.strip():
        raise CertificateError("The CA certificate is empty")
    if len(pem.encode()) > MAX_PEM_BYTES:
        raise CertificateError(f"The CA certificate is larger than {MAX_PEM_BYTES // 1024} KiB")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise CertificateError("Not a PEM certificate: expected -----BEGIN CERTIFICATE-----")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CertificateError(f"The PEM could not be parsed as certificates: {exc}") from exc
    now = now or datetime.now(UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string()
        try:
            constraints = certificate.extensions.get_extension_for_oid(
                ExtensionOID.BASIC_CONSTRAINTS
            ).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CertificateError(
                f"{subject} is not a CA certificate (BasicConstraints CA=true is missing): "
                "paste the certificate of the authority that signed the server's certificate"
            )
        if certificate.not_valid_after_utc < now:
            expired = certificate.not_valid_after_utc
            raise CertificateError(f"The CA certificate {subject} expired on {expired:%Y-%m-%d}")
        if certificate.not_valid_before_utc > now:
            raise CertificateError(
                f"The CA certificate {subject} is not valid before "
                f"{certificate.not_valid_before_utc:%Y-%m-%d}"
            )
    return certificates
