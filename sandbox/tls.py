"""A private certificate authority for the Data Center sandbox, generated with ``cryptography``.

The sandbox serves HTTPS with a server certificate (``127.0.0.1``, ``::1``, ``localhost``) issued
by a CA made on the spot, as a self-hosted Bitbucket behind a company CA does: a client verifies it
only once that CA's PEM is added to its trust store, which is exactly what the provider's private-CA
support has to get right. Keys are EC P-256 so generation takes milliseconds.
"""

import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class SandboxTls:
    """The CA certificate (what a client trusts) and the server's certificate chain and key."""

    ca_pem: str
    cert_pem: str  # the server certificate followed by the CA's
    key_pem: str

    def server_context(self) -> ssl.SSLContext:
        """A server-side context; ``load_cert_chain`` only reads files, so they are written to a
        private temporary directory and removed again."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="lantern-sandbox-tls-") as directory:
            cert_path = os.path.join(directory, "cert.pem")
            key_path = os.path.join(directory, "key.pem")
            with open(cert_path, "w") as cert_file:
                cert_file.write(self.cert_pem)
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as key_file:
                key_file.write(self.key_pem)
            context.load_cert_chain(cert_path, key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lantern Sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def generate_ca(
    *, common_name: str = "Lantern Sandbox Private CA", days: int = 30, now: datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA (BasicConstraints CA=true, keyCertSign), valid from a day ago."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue_server_certificate(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    days: int = 30,
    now: datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf for ``hosts`` (IP addresses and DNS names in the subjectAltName), serverAuth."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def sandbox_tls(*, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 30) -> SandboxTls:
    """A fresh CA and a server certificate it signed, as PEM."""
    ca, ca_key = generate_ca(days=days)
    leaf, key = issue_server_certificate(ca, ca_key, hosts=hosts, days=days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SandboxTls(ca_pem=_pem(ca), cert_pem=_pem(leaf) + _pem(ca), key_pem=key_pem)
