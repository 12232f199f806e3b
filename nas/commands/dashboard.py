"""`nas dashboard`: serve a search run's Optuna study with optuna-dashboard (optional extra) on a local port."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import typer

from core.console import console
from core.errors import UserError

MISSING_EXTRA = ("nas dashboard needs optuna-dashboard, an optional extra: pip install 'mobile-diffusion-nas[dashboard]' "
                 "(or pip install optuna-dashboard)")


class _QuietHandler(WSGIRequestHandler):
    """wsgiref logs every request on stderr; the dashboard polls its API every few seconds."""

    def log_message(self, format: str, *args) -> None:
        pass


def _study_storage(run_dir: Path):
    """(storage, study name, study id) of a search run folder, without creating a database that is not there."""
    import optuna

    from core.run_folder import RunFolder
    from nas.search import open_storage

    run = RunFolder.open(run_dir)
    manifest = run.manifest()
    url, name = run.storage_url(manifest), manifest.get("study_name")
    if not url or not name:
        raise UserError(f"{run.path}: a run folder of kind {manifest.get('kind', 'search')!r} has no Optuna study; "
                        f"`nas report {run_dir}` shows its results")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise UserError(f"{run.path}: the study database {url[len('sqlite:///'):]} does not exist")
    storage = open_storage(url)
    try:
        return storage, name, storage.get_study_id_from_name(name)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_studies(storage)) or "none"
        raise UserError(f"study {name!r} is not in {url} (studies there: {names})") from None


def dashboard(run_dir: Path = typer.Argument(..., help="A search run folder (from `nas search`)."),
              host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine "
                                       "only)."),
              port: int = typer.Option(8080, "--port", help="Port to listen on (0: any free port).")) -> None:
    """Serve the run's Optuna study with optuna-dashboard until Ctrl-C (needs the `dashboard` extra)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(MISSING_EXTRA) from None
    storage, name, study_id = _study_storage(run_dir)
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    try:
        server = make_server(host, port, optuna_dashboard.wsgi(storage), handler_class=_QuietHandler)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    url_host = f"[{host}]" if ":" in host else host
    console.print(f"optuna-dashboard: study {name!r} of {run_dir} at "
                  f"http://{url_host}:{server.server_port}/dashboard/studies/{study_id} (Ctrl-C stops it)",
                  soft_wrap=True, markup=False)
    _serve_until_signal(server)


def _serve_until_signal(server) -> None:
    """Serve on a daemon thread until SIGINT or SIGTERM, then stop the loop and close the socket.

    A KeyboardInterrupt raised inside `serve_forever` lands wherever the main thread happens to be (a request
    handler, sqlalchemy's pool, wsgiref's cleanup), and the dashboard was seen not to exit after Ctrl-C (once in
    four test runs). Here the signal only sets an event; the main thread then stops the loop from outside it,
    with a bounded wait for a request still being served.
    """
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    serving = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.2), daemon=True)
    serving.start()
    try:
        while not stop.wait(0.5) and serving.is_alive():
            pass
    finally:
        closer = threading.Thread(target=server.shutdown, daemon=True)
        closer.start()
        closer.join(timeout=10)  # a request that never ends must not keep the process alive (daemon threads)
        server.server_close()
        for s, handler in previous.items():
            signal.signal(s, handler)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
