"""Debian's Dovecot as a throwaway IMAP and POP3 server for the bounce mailbox tests and benchmark: its own
ports, configuration, users and Maildirs under a directory given to it (installed by `make test` through
scripts/ensure_dovecot.sh). Messages are delivered by writing them into a user's Maildir (new/), as an
MDA does. It speaks plain text, STARTTLS and implicit TLS, with a self-signed certificate for 127.0.0.1
(`ca_file`) made with cryptography.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from localservers.ports import free_port, wait_for_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "bounce-secret"
USERS = 200  # mailboxes a session may hand out

CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = mailer-test-{port}
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{base}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
default_internal_user = {internal}
default_login_user = {login}
login_trusted_networks =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
"""


def available():
    """None when Dovecot can run here, else why not (the tests skip with it)."""
    if not (os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/imap")
            and os.path.exists("/usr/lib/dovecot/pop3")):
        return "Debian's Dovecot is not installed (scripts/ensure_dovecot.sh installs it as root)"
    return None


class Dovecot:
    def __init__(self, base: Path):
        self.base = base
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.imaps_port = free_port()
        self.pop3s_port = free_port()
        self.ca_file = base / "cert.pem"  # a self-signed certificate for 127.0.0.1: trust it to verify TLS
        self.process = None
        self.free_users = []

    def start(self):
        for name in ("run", "state", "mail", "home"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        # Every user is written before the start: Dovecot notices a changed passwd-file by its mtime in
        # whole seconds, so a user added in the same second as the previous one would not log in.
        self.free_users = [f"bounces-{number:03d}" for number in range(USERS)]
        (self.base / "users").write_text("".join(f"{user}:{{PLAIN}}{PASSWORD}\n" for user in self.free_users))
        me = pwd.getpwuid(os.getuid())
        internal = "dovecot" if os.getuid() == 0 else me.pw_name
        login = "dovenull" if os.getuid() == 0 else me.pw_name
        # Dovecot refuses to access mail as root: as root, the mail belongs to its own "dovecot" user.
        owner = pwd.getpwnam("dovecot") if os.getuid() == 0 else me
        self.uid, self.gid = owner.pw_uid, owner.pw_gid
        os.chown(self.base / "mail", self.uid, self.gid)
        (self.base / "dovecot.conf").write_text(CONFIG.format(
            base=self.base, port=self.imap_port, uid=self.uid, gid=self.gid, internal=internal, login=login,
            imap_port=self.imap_port, pop3_port=self.pop3_port, imaps_port=self.imaps_port,
            pop3s_port=self.pop3s_port))
        write_certificate(self.base / "cert.pem", self.base / "key.pem")
        if os.getuid() == 0:  # the unprivileged login and internal processes must reach their sockets
            for path in (self.base, self.base / "run"):
                path.chmod(0o755)
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.base / "dovecot.conf")],
                                        stdout=subprocess.DEVNULL, stderr=open(self.base / "stderr.log", "wb"))
        for port in (self.imap_port, self.pop3_port, self.imaps_port, self.pop3s_port):
            wait_for_port(port, self.process, name="dovecot", log_path=self.base / "stderr.log", timeout=30)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def new_user(self):
        """A fresh mailbox user (so tests never share messages); returns its name."""
        return self.free_users.pop(0)

    def maildir(self, user, folder=""):
        root = self.base / "mail" / user
        return root / f".{folder.replace('/', '.')}" if folder and folder != "INBOX" else root

    def deliver(self, user, raw: bytes):
        """Write RAW into USER's INBOX as a new message, as an MDA would (tmp/ then rename into new/)."""
        root = self.maildir(user)
        if not (root / "new").exists():
            for path in (root, root / "tmp", root / "new", root / "cur"):
                path.mkdir(parents=True, exist_ok=True)
                os.chown(path, self.uid, self.gid)
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.test"
        tmp = root / "tmp" / name
        tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
        os.chown(tmp, self.uid, self.gid)
        tmp.rename(root / "new" / name)

    def count(self, user, folder=""):
        """Messages in USER's FOLDER (INBOX by default) as files, read or not, not marked deleted."""
        root = self.maildir(user, folder)
        return sum(1 for sub in ("new", "cur") if (root / sub).exists()
                   for path in (root / sub).iterdir() if not path.name.split(":2,")[-1].count("T"))


def write_certificate(cert_path: Path, key_path: Path):
    """A self-signed certificate for 127.0.0.1 and localhost, valid for a day."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
