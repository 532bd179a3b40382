"""Development TLS material for the project's broker: a self-signed CA and a broker certificate signed by it.

For `streamscore kafka up --secure` on a machine without a PKI, and for tests. Made with the `openssl` command
(RSA 2048, ten years, the broker certificate valid for 127.0.0.1 and localhost). Production brokers bring their
own certificates: `kafka up --secure --tls-dir DIR` takes `ca.pem`, `broker.pem` and `broker.key` from DIR.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import SetupError

CA_FILE = "ca.pem"
CERT_FILE = "broker.pem"
KEY_FILE = "broker.key"


@dataclass(frozen=True)
class BrokerTls:
    """A broker's TLS files: the CA clients trust, the broker's certificate (chain) and its private key
    (unencrypted PKCS#8 PEM)."""

    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> BrokerTls:
        """The files `ca.pem`, `broker.pem`, `broker.key` of `folder`; `SetupError` naming any that is missing."""
        tls = cls(folder / CA_FILE, folder / CERT_FILE, folder / KEY_FILE)
        missing = [str(p) for p in (tls.ca, tls.certificate, tls.key) if not p.is_file()]
        if missing:
            raise SetupError(f"TLS folder {folder} lacks {', '.join(missing)} (expected {CA_FILE}, {CERT_FILE}, "
                             f"{KEY_FILE}; or omit --tls-dir to generate a development CA)")
        return tls


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SetupError("the openssl command is needed to make development certificates (or pass --tls-dir DIR)")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SetupError(f"openssl {args[0]} failed in {cwd}: {proc.stderr.strip()[-500:]}")


def make_dev_certificates(folder: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> BrokerTls:
    """Write a new self-signed CA and a broker certificate for `hosts` into `folder` (0700); returns the files.
    The CA's private key stays in the folder (`ca.key`) and is never given to clients."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", CA_FILE, "-days", "3650",
             "-subj", "/CN=streamscore development CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", KEY_FILE, "-out", "broker.csr",
             "-subj", "/CN=streamscore broker", cwd=folder)
    (folder / "broker.ext").write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={names}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", CA_FILE, "-CAkey", "ca.key", "-CAcreateserial",
             "-out", CERT_FILE, "-days", "3650", "-sha256", "-extfile", "broker.ext", cwd=folder)
    for name in ("ca.key", KEY_FILE):
        (folder / name).chmod(0o600)
    return BrokerTls(folder / CA_FILE, folder / CERT_FILE, folder / KEY_FILE)
