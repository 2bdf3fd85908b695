"""Shared by the browser tests: where Chromium is, screenshots, and signing in."""

from __future__ import annotations

import os
from pathlib import Path

from tests.factories import make_user

CHROMIUM = os.environ.get("PUREBOOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "admin"
PASSWORD = "browser-test-Pa55word"


def login(browser, live_server, username):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def staff_user(role, sites=()):
    user = make_user(role, sites=sites)
    user.is_staff = True
    user.set_password(PASSWORD)
    user.save()
    return user
