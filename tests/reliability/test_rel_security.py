"""Security: the credentials file, secrets kept out of every output, TLS verification,
no shell, file commands' path safety, and a development Manager on loopback only."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import base64
import logging
import os
import pathlib
import re
import shutil
import signal
import ssl
import stat
import subprocess
import sys

import gevent.pywsgi
import pytest

from fworker import config, credentials
from fworker.errors import ConfigError, InvalidSettings, RetryLater
from fworker.upstream import Upstream
from tests.support.waiting import wait_until

PY = sys.executable
REPO = pathlib.Path(__file__).resolve().parents[2]


def test_credentials_replace_a_0644_file_without_ever_being_readable_by_others(tmp_path, monkeypatch):
    path = tmp_path / "creds.cfg"
    path.write_text("# mine\n[flamenco-worker]\nnickname = n\n")
    os.chmod(path, 0o644)
    old = os.open(path, os.O_RDONLY)  # the old file, whatever its name becomes
    seen = []
    real_replace = os.replace

    def replace(src, dst):  # the moment the secret gets the file's name
        seen.append((stat.S_IMODE(os.stat(src).st_mode), "s3cret-value" in pathlib.Path(src).read_text()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    umask = os.umask(0)  # the worst case: nothing filtered by the umask
    try:
        credentials.save_credentials("0123456789abcdef01234567", "s3cret-value", str(path))
    finally:
        os.umask(umask)
    assert seen == [(0o600, True)], "written complete and private before it is renamed"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "s3cret-value" not in os.read(old, 100_000).decode(), "the 0644 file never held the secret"
    os.close(old)
    assert "# mine" in path.read_text()


def secrets_in(text, secrets):
    return [name for name, value in secrets.items() if value and value in text]


@pytest.mark.slow
def test_no_secret_in_debug_output_task_logs_or_errors(tmp_path, worker_process):
    from fworker.devmanager import DevManager

    registration_secret = "reg-secret-Zq8vN3-a-long-enough-hmac-key"
    manager = DevManager(str(tmp_path / "m.sqlite"), registration_secret=registration_secret).start()
    try:
        ids = manager.submit_job({"name": "j", "job_type": "debug", "priority": 50, "tasks": [
            {"name": "ok", "task_type": "debug", "commands": [{"name": "echo", "settings": {"message": "hi"}}]},
            {"name": "bad", "task_type": "debug", "commands": [{"name": "exec", "settings": {"cmd": "/no/such"}}]},
        ]})["task_ids"]
        root = tmp_path / "w"
        settings = {"worker_registration_secret": registration_secret, "task_log_folder": str(root / "tasklogs")}
        w = worker_process(manager.url, root=root, args=["-d"], settings=settings)
        wait_until(lambda: [manager.task(t)["status"] for t in ids] == ["completed", "failed"], timeout=30)
        first = config.load(files=[str(w.credentials_file)])
        w.send(signal.SIGTERM)
        assert w.wait() == 0
        manager.forget_worker(first.worker_id)  # sign-on gets a 401: it registers again, new secret
        w = worker_process(manager.url, root=root, args=["-d"], settings=settings)
        ids += manager.submit_job({"name": "k", "job_type": "debug", "priority": 50, "tasks": [
            {"name": "later", "task_type": "debug",
             "commands": [{"name": "exec", "settings": {"cmd": f"{PY} -c 'print(1)'"}}]}]})["task_ids"]
        wait_until(lambda: manager.task(ids[2])["status"] == "completed", timeout=30)
        w.send(signal.SIGTERM)
        assert w.wait() == 0
        second = config.load(files=[str(w.credentials_file)])
        assert second.worker_secret != first.worker_secret
        check = subprocess.run([PY, "-m", "fworker", "-c", str(w.config), "--check-config"], capture_output=True,
                               text=True, env=dict(os.environ, HOME=str(w.home)), timeout=60)
    finally:
        manager.stop()
    secrets = {"registration secret": registration_secret}
    for n, s in enumerate((first, second)):
        secrets[f"secret {n}"] = s.worker_secret
        secrets[f"basic auth {n}"] = base64.b64encode(f"{s.worker_id}:{s.worker_secret}".encode()).decode()
    output = "".join(p.read_text() for p in sorted(root.glob("worker-*.log")))
    assert "registered as worker" in output and "does not know worker" in output
    outputs = {"worker -d output": output, "--check-config": check.stdout + check.stderr,
               "Manager task logs": "".join(manager.task_log(t) for t in ids),
               "local task logs": "".join(p.read_text() for p in (root / "tasklogs").iterdir())}
    assert "DEBUG" in output and "Authorization" not in output
    assert "worker_secret = *****" in check.stdout
    for where, text in outputs.items():
        assert not secrets_in(text, secrets), f"{secrets_in(text, secrets)} in the {where}"
        assert not re.search(r"eyJ[\w-]+\.eyJ", text), f"a registration token (JWT) in the {where}"


def test_a_secret_in_a_bad_value_is_masked_in_the_error(tmp_path):
    path = tmp_path / "c.cfg"
    path.write_text("[flamenco-worker]\nworker_registration_secret = top, secret\n")
    with pytest.raises(ConfigError) as info:
        config.load(files=[str(path)])
    assert "top" not in str(info.value) and "*****" in str(info.value)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)

    def app(environ, start_response):
        start_response("204 No Content", [])
        return [b""]

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, ssl_context=context, log=None, error_log=None)
    server.start()
    yield f"https://127.0.0.1:{server.server_port}/", str(cert)
    server.stop(timeout=0)


def test_tls_is_verified_by_default(tls_server):
    url, _ = tls_server
    assert config.load(files=[]).tls_verify is True and config.load(files=[]).tls_ca_bundle == ""
    with pytest.raises(RetryLater, match="CERTIFICATE_VERIFY_FAILED"):
        Upstream(url, timeout=5).sign_on(["debug"], "n")


def test_a_ca_bundle_makes_a_private_ca_trusted_whatever_the_environment_says(tls_server, monkeypatch, tmp_path):
    url, cert = tls_server
    other = tmp_path / "other.pem"
    other.write_text(pathlib.Path(__import__("certifi").where()).read_text())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))  # must not override the configured bundle
    assert Upstream(url, timeout=5, tls_ca_bundle=cert).sign_on(["debug"], "n").status == 204


def test_the_environments_ca_bundle_is_used_when_none_is_configured(tls_server, monkeypatch):
    url, cert = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    assert Upstream(url, timeout=5).sign_on(["debug"], "n").status == 204


def test_the_environments_http_proxy_is_used_unless_no_proxy_names_the_manager(monkeypatch):
    seen = []

    def proxy_app(environ, start_response):
        # A forward proxy is asked for the absolute URL; answering it here is enough.
        seen.append(environ["PATH_INFO"] if "://" not in environ.get("REQUEST_URI", "") else environ["REQUEST_URI"])
        start_response("204 No Content", [])
        return [b""]

    proxy = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), proxy_app, log=None, error_log=None)
    proxy.start()
    try:
        manager_url = "http://manager.invalid:8080/"
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert Upstream(manager_url, timeout=5).fetch_task().status == 204
        assert seen == ["http://manager.invalid:8080/task"]
        monkeypatch.setenv("no_proxy", "manager.invalid")
        with pytest.raises(RetryLater, match="not reachable"):
            Upstream(manager_url, timeout=5).fetch_task()
        assert len(seen) == 1
    finally:
        proxy.stop(timeout=0)


def test_turning_verification_off_works_and_is_said_loudly(tls_server, caplog):
    url, _ = tls_server
    caplog.set_level(logging.WARNING, logger="fworker.upstream")
    upstream = Upstream(url, timeout=5, tls_verify=False)
    assert "TLS certificate verification is OFF" in caplog.text
    assert upstream.sign_on(["debug"], "n").status == 204


def test_a_missing_ca_bundle_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match=r"tls_ca_bundle = .*no such file"):
        Upstream("https://manager:8080/", tls_ca_bundle=str(tmp_path / "missing.pem"))


def test_commands_never_go_through_a_shell(run_command, tmp_path):
    target = tmp_path / "made-by-a-shell"
    rec = run_command("exec", {"cmd": f"echo $HOME && touch {target} ; `id` *"})
    assert rec.log == [f"$HOME && touch {target} ; `id` *"]
    assert not target.exists()
    sources = "".join(p.read_text() for p in (REPO / "fworker").rglob("*.py"))
    assert not re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", sources)


@pytest.mark.parametrize("command, settings", [
    ("remove_tree", {"path": "/"}), ("remove_tree", {"path": ""}), ("remove_tree", {"path": "//"}),
    ("remove_file", {"path": "/."}), ("move_out_of_way", {"src": "/"}),
    ("move_to_final", {"src": "/tmp/x", "dest": "/"}), ("copy_file", {"src": "/etc/hostname", "dest": ""}),
])
def test_file_commands_refuse_empty_and_root_paths(run_command, command, settings):
    with pytest.raises(InvalidSettings):
        run_command(command, settings)


def test_development_manager_and_fault_manager_listen_on_loopback_by_default(manager):
    from fworker.devmanager import cli
    from tests.support.faults import FaultProxy

    proxy = FaultProxy(manager.url).up()
    try:
        assert manager._server.address[0] == "127.0.0.1" and proxy.server.address[0] == "127.0.0.1"
    finally:
        proxy.down()
    assert cli._parser().parse_args(["serve"]).host == "127.0.0.1"
