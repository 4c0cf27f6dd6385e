"""`twofactor admin list` at a size that needs more than one answer frame (issue 13).

30,000 accounts with an enrollment waiting for confirmation (the smallest account record the list
shows) take about 1.7 MB as one listAccounts answer, over the 1 MiB response limit: before
paging the command failed with "too many accounts for one answer". Now the daemon answers a page
at a time (listAfter / listMore, docs/PROTOCOL.md) and the command prints each page as it comes.
"""
import json
import subprocess
import threading

import helpers
import twofactor_wire as wire

ACCOUNTS = 30_000
CLIENTS = 8


def begin_enrollments(daemon, names):
    """enrollBegin for each name, over CLIENTS persistent connections (the daemon groups the
    commits of concurrent requests, so this takes seconds, not minutes)."""
    errors = []

    def work(part):
        try:
            with wire.connect(daemon.socket, timeout=30) as sock:
                for name in part:
                    sock.sendall(wire.encode_frame(wire.OP["enrollBegin"], {"user": name}))
                    answer = wire.read_response(sock)
                    if answer.status != "ok":
                        errors.append((name, answer))
                        return
        except Exception as error:  # reported below, in the test's thread
            errors.append(("connection", error))

    threads = [threading.Thread(target=work, args=(names[i::CLIENTS],)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def admin_list(daemon, *args):
    done = subprocess.run(helpers.cli_command(None, "admin", "list", *args, socket=daemon.socket),
                          capture_output=True, text=True, timeout=300, env=helpers.CLI_ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_admin_list_pages_through_30000_accounts(daemon):
    prefix = helpers.unique_name("pg")
    names = [f"{prefix}{i:05d}" for i in range(ACCOUNTS)]
    begin_enrollments(daemon, names)
    enrolled = daemon.enroll(helpers.unique_name("pe"))  # one fully enrolled account among them

    listed = json.loads(admin_list(daemon, "--json"))["accounts"]
    users = [a["user"] for a in listed]
    expected = sorted(names + [enrolled.user], key=lambda n: n.encode())
    assert users == expected, "every account exactly once, in byte order of the names"
    by_user = {a["user"]: a for a in listed}
    assert by_user[names[0]]["pending"] is True and by_user[names[0]]["enrolled"] is False
    assert by_user[enrolled.user]["enrolled"] is True
    assert by_user[enrolled.user]["recovery_codes_left"] == 8

    table = admin_list(daemon).splitlines()
    assert table[0].split()[0] == "USER"
    assert [line.split()[0] for line in table[1:]] == expected

    # The protocol underneath: several pages; a client that does not page is refused rather
    # than given a list cut short.
    first = daemon.request("listAccounts", {"listAfter": ""})
    assert first.status == "ok" and first["listMore"] is True
    page = [a["user"] for a in first["account"]]
    assert 0 < len(page) < ACCOUNTS and page == expected[:len(page)]
    second = daemon.request("listAccounts", {"listAfter": page[-1]})
    assert [a["user"] for a in second["account"]][0] == expected[len(page)]
    legacy = daemon.request("listAccounts")
    assert legacy.status == "internalError" and "too many accounts" in legacy["message"]


def test_admin_list_last_page_says_no_more(daemon):
    assert json.loads(admin_list(daemon, "--json")) == {"accounts": []}
    assert "No account" in admin_list(daemon)
    enrolled = daemon.enroll(helpers.unique_name("pe"))
    answer = daemon.request("listAccounts", {"listAfter": ""})
    assert answer.status == "ok" and answer["listMore"] is False
    assert [a["user"] for a in answer["account"]] == [enrolled.user]
    after = daemon.request("listAccounts", {"listAfter": enrolled.user})
    assert after.status == "ok" and after["listMore"] is False and not after.get("account")
    assert [a["user"] for a in json.loads(admin_list(daemon, "--json"))["accounts"]] == [enrolled.user]
    assert daemon.request("listAccounts", {"listAfter": "x" * 300}).status == "badRequest"
