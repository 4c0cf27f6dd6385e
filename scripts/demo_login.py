"""The demonstration's last step (run by scripts/demo, as root, with twofactor installed and the
daemon running): a throwaway account enrolls with `twofactor enable`, then logs in over SSH on
127.0.0.1 with password plus code through a throwaway sshd, and a wrong code is refused.
oathtool plays the authenticator app. Everything made here is removed on every exit path.

The account, the sshd, the ssh client and the codes are the test kit's (Tests/integration/
helpers.py and ssh_kit.py), the same pieces the sshd tests use. Like the tests, it can be pointed
at a build instead of the installed product (scripts/demo never does): TWOFACTOR_CLI and
TWOFACTOR_PAM_MODULE name the binaries, TWOFACTOR_SOCKET a running daemon's socket."""
import os
import subprocess
import sys

import pexpect

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "integration"))
import helpers  # noqa: E402  (the test kit, imported by path)
import ssh_kit  # noqa: E402

# Unset: the daemon's default socket, for the module and the command line alike.
SOCKET = os.environ.get("TWOFACTOR_SOCKET")


def explain(text):
    print(f"\n\033[1m-- {text}\033[0m", flush=True)


class Demo:
    def __init__(self):
        self.name = helpers.unique_name("tfdemo")
        self.user = None
        self.codes = None
        self.sshd = None
        self.client = None

    # -- steps ------------------------------------------------------------------------------

    def make_account(self):
        explain(f"A throwaway account {self.name} with a password")
        self.user = helpers.ThrowawayUser(name=self.name)

    def enroll(self):
        explain(f"{self.name} runs `twofactor enable`: QR code, secret, then a code from the app")
        child = pexpect.spawn("runuser", ["-u", self.name, "--", helpers.TWOFACTOR_CLI, "enable"],
                              env={**os.environ, "LANG": "C.UTF-8", "TERM": "xterm"},
                              encoding="utf-8", timeout=20)
        child.logfile_read = sys.stdout
        child.expect(helpers.ENABLE_PROMPT)
        secret, _ = helpers.parse_enable_screen(child.before)
        self.codes = helpers.Codes(secret)
        code = self.codes.current()
        print(f"\n[the authenticator app shows {code}]", flush=True)
        child.sendline(code)
        child.expect("will not be shown again")
        child.expect(pexpect.EOF)
        child.close()
        if child.exitstatus != 0:
            raise SystemExit(f"demo: twofactor enable exited with {child.exitstatus}")

    def start_sshd(self):
        explain("A throwaway sshd on 127.0.0.1 whose PAM stack is password, then twofactor")
        stack = ssh_kit.pam_lines([f"socket={SOCKET}"] if SOCKET else [],
                                  auth_first=("auth required pam_unix.so",))
        self.sshd = ssh_kit.ThrowawaySshd(stack, allow_users=self.name, prefix="tfdemo",
                                          comment="the twofactor demo").start()
        print(helpers.read_text(self.sshd.pam.path), end="")
        self.client = ssh_kit.OpenSshClient(prefix="tfdemo")

    def ssh(self, code):
        return self.client.login(self.sshd.port, self.name, self.user.password, code,
                                 log_level="ERROR")

    def log_in(self):
        explain(f"ssh {self.name}@127.0.0.1 'id -un' with the password and a fresh code")
        # The code typed at enrollment is spent; the app's next code (one step ahead, inside the
        # accepted window) is a new one.
        code = self.codes.next_code()
        print(f"[the authenticator app shows {code}]")
        result = self.ssh(code)
        print(f"ssh exit status {result.exit_status}; the remote command printed: {result.output.strip()!r}")
        if not result.authenticated or result.exit_status != 0 or result.output.strip() != self.name:
            raise SystemExit("demo: the login failed:\n" + "".join(result.messages))
        print("Logged in with password + code.")

        explain("The same login with a wrong code")
        result = self.ssh(self.codes.wrong_code())
        print(f"ssh exit status {result.exit_status}: {''.join(result.messages).strip()}")
        if result.exit_status == 0:
            raise SystemExit("demo: a wrong code was accepted")
        print("Refused.")
        self.show_audit_log()

    def show_audit_log(self):
        log = "/var/log/twofactord.log"
        if os.path.exists(log):
            explain(f"The daemon's audit lines for {self.name} ({log})")
            with open(log, errors="replace") as f:
                lines = [line.rstrip() for line in f if f"account={self.name}" in line]
            print("\n".join(lines[-6:]))
        else:
            explain(f"The daemon's audit lines: journalctl -u twofactord | grep account={self.name}")

    # -- cleanup ----------------------------------------------------------------------------

    def clean_up(self):
        explain("Cleaning up: the throwaway sshd, PAM service and account")
        if self.sshd is not None:
            self.sshd.destroy()
        if self.client is not None:
            self.client.destroy()
        if self.user is not None:
            subprocess.run([helpers.TWOFACTOR_CLI, "admin", "reset", "--yes", self.name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.user.remove()


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
