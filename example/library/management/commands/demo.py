"""``python manage.py demo``: drive the library site through the audit and print what it recorded.

Everything runs in this process: the database is SQLite (``db.sqlite3``), requests go through the full
middleware stack with Django's test client, and an outbound call goes to a small HTTP server on loopback.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.test import Client

import activity_audit
from activity_audit.conf import get_settings
from activity_audit.dispatch import pipeline
from library.models import Author, Book


class _RatesHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"currency": "EUR", "rate": 1.08}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Command(BaseCommand):
    help = "Run a scripted tour of the library site and print the audit records it produced."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        stream = pipeline.stream_id
        self._tour()
        activity_audit.flush(10)
        self._show(stream)

    def _tour(self) -> None:
        with activity_audit.audit_context(source="demo-setup"):
            User.objects.filter(username="alice").delete()
            User.objects.create_user("alice", password="correct horse battery staple")  # noqa: S106
        client = Client()
        client.post("/login/", {"username": "alice", "password": "wrong guess"})
        client.post("/login/", {"username": "alice", "password": "correct horse battery staple"})
        created = client.post(
            "/books/",
            {"title": "Dune", "author": "Frank Herbert", "price": "9.99"},
            content_type="application/json",
        ).json()
        client.patch(f"/books/{created['id']}/", {"price": "12.50"}, content_type="application/json")
        client.get("/books/", HTTP_AUTHORIZATION="Bearer not-a-real-token")
        try:
            with transaction.atomic():
                Book.objects.create(title="Never published", author=Author.objects.first(), price="1.00")
                raise RuntimeError("rolled back on purpose")
        except RuntimeError:
            pass
        with activity_audit.audit_context(actor="system:price-import"):
            Book.objects.filter(pk=created["id"]).update(in_stock=False)
        self._outbound_call()
        client.delete(f"/books/{created['id']}/")

    def _outbound_call(self) -> None:
        try:
            from activity_audit import HTTPClient
        except ImportError:
            return
        server = ThreadingHTTPServer(("127.0.0.1", 0), _RatesHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = HTTPClient("rates")
            client.get(f"http://127.0.0.1:{server.server_address[1]}/rates", params={"base": "USD"})
        finally:
            server.shutdown()

    def _show(self, stream: str) -> None:
        log_dir = get_settings().LOG_DIR
        for file_name in ("audit.log", "api.log", "app.log"):
            path = log_dir / file_name
            records = [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
            mine = [r for r in records if r.get("stream_id") == stream]
            heading = f"\n=== {path} ({len(mine)} records from this run)"
            self.stdout.write(self.style.MIGRATE_HEADING(heading))
            for record in mine:
                self.stdout.write(json.dumps(record, indent=2, ensure_ascii=False))
        self.stdout.write(
            self.style.MIGRATE_HEADING("\n=== python manage.py audit verify (this run's files)")
        )
        call_command(
            "audit", "verify", *(str(log_dir / name) for name in ("audit.log", "api.log", "app.log"))
        )
