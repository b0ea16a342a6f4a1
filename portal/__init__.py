"""Overread: a second-opinion and teleradiology portal."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict | None = None) -> Flask:
    """Build the Overread web application.

    :param config: settings that win over the ``OVERREAD_*`` environment.
    :raise ConfigError: a setting is missing or malformed.
    """
    app = Flask(__name__, instance_relative_config=True, template_folder=str(ROOT / "templates"))
    from portal.config import load_config

    app.config.update(load_config(app.instance_path, config))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    from portal import database, errors_web, logs, models, security, storage

    logs.init_logging()
    from portal.extensions import csrf, db, limiter, login_manager, migrate

    database.init_app(app)
    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=str(Path(__file__).parent / "migrations"),
        render_as_batch=True,
        compare_type=True,
    )
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    models.import_all()
    security.init_app(app)
    errors_web.init_app(app)
    storage.init_app(app)
    if app.config["PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    _register_blueprints(app)
    _register_commands(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from portal.admin.views import bp as admin_bp
    from portal.auth.account_views import bp as account_bp
    from portal.auth.views import bp as auth_bp
    from portal.cases.views import bp as cases_bp
    from portal.dicomweb import (  # noqa: F401 - their routes join the blueprint
        qido,
        rendered,
        stow,
        wado,
    )
    from portal.dicomweb.blueprint import bp as dicomweb_bp
    from portal.health import bp as health_bp
    from portal.home import bp as home_bp
    from portal.links.web import bp as links_bp
    from portal.oncall.web import bp as oncall_bp
    from portal.reports.views import bp as reports_bp
    from portal.shares.views import bp as shares_bp
    from portal.studies.upload_views import bp as uploads_bp
    from portal.viewer.web import bp as viewer_bp

    blueprints = (
        home_bp,
        auth_bp,
        account_bp,
        admin_bp,
        health_bp,
        dicomweb_bp,
        uploads_bp,
        cases_bp,
        reports_bp,
        shares_bp,
        oncall_bp,
        links_bp,
        viewer_bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)


def _register_commands(app: Flask) -> None:
    from portal.audit.cli import audit_cli
    from portal.auth.cli import users_cli
    from portal.demo import demo_command
    from portal.dimse.cli import dicom_cli
    from portal.notifications.cli import dispatch_command
    from portal.storage.cli import storage_cli
    from portal.studies.cli import verify_command

    storage_cli.add_command(verify_command)
    for command in (users_cli, audit_cli, dispatch_command, demo_command, storage_cli, dicom_cli):
        app.cli.add_command(command)
