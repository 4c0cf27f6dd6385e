"""The demonstration's last step (run by scripts/demo, as root, with twofactor installed and the
daemon running): a throwaway account enrolls with `twofactor enable`, then logs in over SSH on
127.0.0.1 with password plus code through a throwaway sshd, and a wrong code is refused.
oathtool plays the authenticator app. Everything made here is removed on every exit path."""
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pexpect

SSHD = "/usr/sbin/sshd"
PAM_MODULE = "/usr/lib/x86_64-linux-gnu/security/pam_twofactor.so"


def explain(text):
    print(f"\n\033[1m-- {text}\033[0m", flush=True)


def totp(secret, at):
    return subprocess.run(["oathtool", "--totp", "-b", "-N", f"@{int(at)}", secret],
                          check=True, capture_output=True, text=True).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self):
        self.user = "tfdemo" + secrets.token_hex(3)
        self.password = "demo-" + secrets.token_urlsafe(9)
        self.dir = tempfile.mkdtemp(prefix="twofactor-demo-")
        self.service = f"sshd-{self.user}"
        self.pam_file = f"/etc/pam.d/{self.service}"
        self.sshd = None
        self.user_made = False
        self.secret = None

    # -- steps ------------------------------------------------------------------------------

    def make_account(self):
        explain(f"A throwaway account {self.user} with a password")
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", self.user], check=True)
        self.user_made = True
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n", text=True, check=True)

    def enroll(self):
        explain(f"{self.user} runs `twofactor enable`: QR code, secret, then a code from the app")
        child = pexpect.spawn("runuser", ["-u", self.user, "--", "twofactor", "enable"],
                              env={**os.environ, "LANG": "C.UTF-8", "TERM": "xterm"},
                              encoding="utf-8", timeout=20)
        child.logfile_read = sys.stdout
        child.expect("Code from the app: ")
        match = re.search(r"secret=([A-Z2-7]+)", child.before)
        if not match:
            raise SystemExit("demo: the otpauth URI with the secret was not shown")
        self.secret = match.group(1)
        code = totp(self.secret, time.time())
        print(f"\n[the authenticator app shows {code}]", flush=True)
        child.sendline(code)
        child.expect("will not be shown again")
        child.expect(pexpect.EOF)
        child.close()
        if child.exitstatus != 0:
            raise SystemExit(f"demo: twofactor enable exited with {child.exitstatus}")

    def start_sshd(self):
        explain("A throwaway sshd on 127.0.0.1 whose PAM stack is password, then twofactor")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        host_key = os.path.join(self.dir, "host_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
        with open(self.pam_file, "w") as f:
            f.write("# throwaway service of the twofactor demo\n"
                    "auth     required pam_unix.so\n"
                    f"auth     required {PAM_MODULE}\n"
                    "account  required pam_unix.so\n"
                    "session  required pam_unix.so\n")
        print(open(self.pam_file).read(), end="")
        self.port = free_port()
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                    f"PidFile {self.dir}/sshd.pid\nUsePAM yes\nKbdInteractiveAuthentication yes\n"
                    "PasswordAuthentication no\nPubkeyAuthentication no\n"
                    "AuthenticationMethods keyboard-interactive\n"
                    f"AllowUsers {self.user}\nPermitRootLogin no\n")
        # sshd uses the PAM service named after the program it was started as.
        link = os.path.join(self.dir, self.service)
        os.symlink(SSHD, link)
        subprocess.run([link, "-t", "-f", config], check=True)
        log = os.path.join(self.dir, "sshd.log")
        self.sshd = subprocess.Popen([link, "-D", "-f", config, "-E", log])
        deadline = time.time() + 10
        while time.time() < deadline:
            if os.path.exists(log) and "Server listening" in open(log).read():
                return
            time.sleep(0.05)
        raise SystemExit("demo: sshd did not start:\n" + open(log).read())

    def ssh(self, code):
        askpass = os.path.join(self.dir, "askpass")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\n"
                    'case "$1" in\n'
                    f'  *assword*) echo "{self.password}" ;;\n'
                    f'  *code*) echo "{code}" ;;\n'
                    "  *) exit 1 ;;\n"
                    "esac\n")
        os.chmod(askpass, 0o755)
        env = {**os.environ, "SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force",
               "DISPLAY": ":0"}
        return subprocess.run(
            ["ssh", "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "PreferredAuthentications=keyboard-interactive",
             "-o", "NumberOfPasswordPrompts=1", f"{self.user}@127.0.0.1", "id -un"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=30)

    def log_in(self):
        explain(f"ssh {self.user}@127.0.0.1 'id -un' with the password and a fresh code")
        # The code typed at enrollment is spent; the app's next code (one step ahead, inside the
        # accepted window) is a new one.
        code = totp(self.secret, time.time() + 30)
        print(f"[the authenticator app shows {code}]")
        result = self.ssh(code)
        print(f"ssh exit status {result.returncode}; the remote command printed: {result.stdout.strip()!r}")
        if result.returncode != 0 or result.stdout.strip() != self.user:
            raise SystemExit(f"demo: the login failed:\n{result.stderr}")
        print("Logged in with password + code.")

        explain("The same login with a wrong code")
        wrong = "%06d" % ((int(code) + 1) % 1_000_000)
        result = self.ssh(wrong)
        print(f"ssh exit status {result.returncode}: {result.stderr.strip()}")
        if result.returncode == 0:
            raise SystemExit("demo: a wrong code was accepted")
        print("Refused.")
        self.show_audit_log()

    def show_audit_log(self):
        log = "/var/log/twofactord.log"
        if os.path.exists(log):
            explain(f"The daemon's audit lines for {self.user} ({log})")
            with open(log, errors="replace") as f:
                lines = [line.rstrip() for line in f if f"account={self.user}" in line]
            print("\n".join(lines[-6:]))
        else:
            explain(f"The daemon's audit lines: journalctl -u twofactord | grep account={self.user}")

    # -- cleanup ----------------------------------------------------------------------------

    def clean_up(self):
        explain("Cleaning up: the throwaway sshd, PAM service and account")
        if self.sshd is not None:
            self.sshd.terminate()
            try:
                self.sshd.wait(10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
        if os.path.exists(self.pam_file):
            os.unlink(self.pam_file)
        if self.user_made:
            subprocess.run(["twofactor", "admin", "reset", "--yes", self.user],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["userdel", "--force", "--remove", self.user],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    demo = Demo()
    try:
        demo.make_account()
        demo.enroll()
        demo.start_sshd()
        demo.log_in()
    finally:
        demo.clean_up()
    print("\nDone. twofactor stays installed: `twofactor enable` as any user turns it on for them;"
          " README.md shows how to protect sshd and sudo.")


if __name__ == "__main__":
    main()
