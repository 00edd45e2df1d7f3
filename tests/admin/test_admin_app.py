"""The admin web app, used as a person would, in headless Chromium against the local
stack (see conftest): every case from the issue, and a screenshot of every page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.admin.conftest import Stack, login, screenshot, session_storage
from tests.fakes import Stall

pytestmark = [pytest.mark.browser, pytest.mark.worker]

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> **bold**'


def digits(text: str) -> str:
    return re.sub(r"[^0-9.]", "", text)


def test_pages_carry_a_strict_content_security_policy(stack: Stack) -> None:
    for path in ("/admin/", "/admin/prompts"):
        response = httpx.get(stack.url + path)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    assets = re.findall(r'src="(/admin/assets/[^"]+\.js)"', httpx.get(stack.app).text)
    assert assets
    script = httpx.get(stack.url + assets[0])
    assert script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    assert script.headers["content-encoding"] == "gzip"
    # A path outside the build is never served.
    assert httpx.get(stack.url + "/admin/assets/..%2f..%2fpackage.json").status_code == 404
    assert httpx.get(stack.url + "/admin", follow_redirects=False).status_code == 308


def test_login_and_logout(page: Any, stack: Stack) -> None:
    # Given the login page
    page.goto(stack.app)
    expect(page.get_by_role("heading", name="Spine admin")).to_be_visible()
    screenshot(page, "login")
    # When a wrong key is given, then it is refused and nothing is kept
    page.get_by_label("API key or JWT").fill("sk-spine-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That key or token was not accepted.")).to_be_visible()
    assert session_storage(page) == {}
    # When the admin key is given, then the dashboard shows, the key in session storage
    login(page, stack, stack.admin_key)
    expect(page.get_by_test_id("whoami")).to_have_text("ops@example.com")
    assert session_storage(page) == {"spine.credential": stack.admin_key}
    # And a reload keeps the session (same tab)
    page.reload()
    expect(page.get_by_test_id("whoami")).to_be_visible()
    # When logging out, then the login page is back and the key is gone
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("API key or JWT")).to_be_visible()
    assert session_storage(page) == {}
    page.reload()
    expect(page.get_by_label("API key or JWT")).to_be_visible()


def test_login_with_a_jwt_from_the_token_exchange(page: Any, stack: Stack) -> None:
    token = stack.api("POST", "/v1/auth/token", stack.user_key)
    if token.status_code != 200:
        pytest.skip(f"no JWT secret in this stack: {token.text}")
    login(page, stack, token.json()["access_token"])
    expect(page.get_by_test_id("whoami")).to_have_text("dev@example.com")


def test_streamed_chat_in_a_new_session_survives_a_reload(page: Any, stack: Stack) -> None:
    # Given an admin in the chat page with the hosted model picked
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Chat").click()
    page.get_by_label("Model or profile").select_option("gpt-test")
    # When a message is sent, then the streamed answer and its tokens and cost show
    page.get_by_label("Message").fill("hello from the browser")
    page.get_by_role("button", name="Send").click()
    transcript = page.get_by_test_id("transcript")
    expect(transcript).to_contain_text("echo: hello from the browser")
    stats = transcript.get_by_test_id("turn-stats").last
    expect(stats).to_contain_text(" in · ")
    expect(stats).to_contain_text("$")
    expect(stats).to_contain_text("gpt-test")
    # And the new session is listed
    sessions = page.get_by_test_id("sessions")
    expect(sessions).to_contain_text("hello from the browser")
    screenshot(page, "chat")
    # When the page is reloaded and the session reopened, then the turn is still there
    page.reload()
    page.get_by_test_id("sessions").get_by_role(
        "button", name="hello from the browser", exact=True
    ).click()
    expect(page.get_by_test_id("transcript")).to_contain_text("echo: hello from the browser")
    expect(page.locator(".turn.user")).to_have_count(1)


def test_stop_ends_a_stream_and_stores_nothing(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Chat").click()
    page.get_by_label("Model or profile").select_option("gpt-test")
    # Given an upstream that goes silent after two chunks
    stack.fakes.script("openai", Stall(after=2, seconds=20))
    page.get_by_label("Message").fill("please stall")
    page.get_by_role("button", name="Send").click()
    # When Stop is pressed mid-stream, then the turn is marked stopped
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("turn-stats").last).to_contain_text("stopped")
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_session_rename_and_delete(page: Any, stack: Stack) -> None:
    created = stack.api(
        "POST", "/v1/sessions", stack.admin_key, {"model": "gpt-test", "title": "to rename"}
    )
    assert created.status_code == 201, created.text
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Chat").click()
    page.once("dialog", lambda d: d.accept("renamed session"))
    page.get_by_role("button", name="Rename to rename").click()
    expect(page.get_by_test_id("sessions")).to_contain_text("renamed session")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete renamed session").click()
    expect(page.get_by_test_id("sessions")).not_to_contain_text("renamed session")
    session_id = created.json()["id"]
    assert stack.api("GET", f"/v1/sessions/{session_id}", stack.admin_key).status_code == 404


def test_model_output_with_html_renders_as_text(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Chat").click()
    page.get_by_label("Model or profile").select_option("gpt-test")
    # When the model's answer holds a script, an img with onerror and markdown
    page.get_by_label("Message").fill(XSS)
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".turn.assistant .markdown").last
    expect(answer).to_contain_text("<script>window.__pwned = 1</script>")
    # Then the HTML is text: no element was made from it, nothing ran
    transcript = page.get_by_test_id("transcript")
    assert transcript.locator("script").count() == 0
    assert transcript.locator("img").count() == 0
    # And markdown still renders
    expect(answer.locator("strong")).to_have_text("bold")
    assert page.evaluate("window.__pwned") is None


def test_prompt_created_edited_rolled_back_with_diff(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Prompts").click()
    # Given a new prompt whose text holds HTML
    page.get_by_role("button", name="New prompt").click()
    page.get_by_label("Slug").fill("greeting")
    page.get_by_label("Template").fill("Hello {{ name }} <script>window.__pwned = 3</script>")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("latest-version")).to_have_text("v1")
    # When it is edited to version 2
    page.get_by_test_id("template").fill("Good morning {{ name }} <b>bold</b>")
    page.get_by_role("button", name="Save as new version").click()
    expect(page.get_by_test_id("latest-version")).to_have_text("v2")
    # Then the diff of v1 -> v2 shows the line removed and the line added, as text
    diff = page.get_by_test_id("diff")
    expect(diff.locator(".removed")).to_contain_text("- Hello {{ name }} <script>")
    expect(diff.locator(".added")).to_contain_text("+ Good morning {{ name }} <b>bold</b>")
    assert diff.locator("script, b").count() == 0
    # And the live render fills the variable through the API
    page.get_by_label("name", exact=True).fill("Ada")
    expect(page.get_by_test_id("rendered")).to_have_text("Good morning Ada <b>bold</b>")
    # When v1 is labelled and rolled back to, then v3 holds v1's text
    page.get_by_label("Label", exact=True).fill("production")
    page.get_by_label("Version", exact=True).fill("1")
    page.get_by_role("button", name="Set label").click()
    expect(page.get_by_test_id("labels")).to_contain_text("production → v1")
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(page.get_by_test_id("latest-version")).to_have_text("v3")
    expect(page.get_by_test_id("template")).to_have_value(
        "Hello {{ name }} <script>window.__pwned = 3</script>"
    )
    screenshot(page, "prompts")
    assert page.evaluate("window.__pwned") is None
    stored = stack.api("GET", "/v1/prompts/greeting", stack.admin_key).json()
    assert stored["latest_version"] == 3
    assert stored["labels"] == {"production": 1}
    # And running it with the hosted model answers (the fake echoes the rendered text)
    page.get_by_label("Run with model").select_option("gpt-test")
    page.get_by_role("button", name="Run", exact=True).click()
    answers = page.get_by_test_id("run-answers")
    expect(answers).to_contain_text("echo: Hello Ada")
    assert answers.locator("script").count() == 0
    # And versions 2 and 3 run side by side on the same variables
    page.get_by_role("switch", name="Side by side").check()
    page.get_by_label("Run with version").select_option("2")
    page.get_by_label("Compare with version").select_option("3")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(answers.locator("article").nth(0)).to_contain_text("echo: Good morning Ada")
    expect(answers.locator("article").nth(1)).to_contain_text("echo: Hello Ada")


def test_key_created_used_revoked_refused(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Keys").click()
    # When a key is created, then it is shown once
    page.get_by_text("Create a key").click()
    page.get_by_label("Name").fill("browser-made")
    page.get_by_label("Scopes (comma separated)").fill("prompts:write")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key").inner_text()
    assert new_key.startswith("sk-spine-")
    screenshot(page, "keys", hide=[page.get_by_test_id("new-key")])
    # And it works
    assert stack.api("GET", "/v1/models", new_key).status_code == 200
    # When it is revoked from the list
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke browser-made").click()
    expect(page.get_by_test_id("key-browser-made")).to_have_count(0)
    # Then its next request is refused
    refused = stack.api("GET", "/v1/models", new_key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"]


def test_key_limits_are_set_from_the_list(page: Any, stack: Stack) -> None:
    key = stack.new_key("limited", [], principal="limited@example.com")
    assert key
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Keys").click()
    row = page.get_by_test_id("key-limited")
    row.get_by_role("button", name="Limits").click()
    row.get_by_label("Requests per minute").fill("5")
    row.get_by_label("Daily budget USD").fill("1.5")
    row.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("5 / default / 1.5 / default")


def test_local_model_unloaded_and_loaded(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    row = page.get_by_test_id("worker-model-smollm2-135m")
    expect(row.get_by_test_id("state")).to_have_text("ready")
    expect(page.get_by_test_id("health")).to_contain_text("worker: ok")
    expect(page.get_by_test_id("breakdown").get_by_role("img")).to_be_visible()
    screenshot(page, "dashboard")
    # When Unload is pressed, then the worker's engine stops
    row.get_by_role("button", name="Unload").click()
    expect(row.get_by_test_id("state")).to_have_text("unloaded")
    assert stack.worker.models()["smollm2-135m"]["state"] == "unloaded"
    # When Load is pressed, then it serves again
    row.get_by_role("button", name="Load", exact=True).click()
    expect(row.get_by_test_id("state")).to_have_text("ready", timeout=60_000)
    assert stack.worker.chat("smollm2-135m").status_code == 200


def test_dashboard_totals_equal_the_usage_api(page: Any, stack: Stack) -> None:
    # Given some traffic from the admin key
    for text in ("one", "two words", "three more words"):
        answer = stack.api(
            "POST",
            "/v1/chat/completions",
            stack.admin_key,
            {"model": "gpt-test", "messages": [{"role": "user", "content": text}]},
        )
        assert answer.status_code == 200, answer.text
    login(page, stack, stack.admin_key)
    expect(page.get_by_test_id("total-requests")).not_to_have_text("0")
    # Then the totals shown are the API's, for the same range
    shown = {
        name: digits(page.get_by_test_id(f"total-{name}").inner_text().split("(")[0])
        for name in ("requests", "errors", "tokens", "cost")
    }
    start = page.evaluate(
        "(() => { const d = new Date(); d.setUTCDate(d.getUTCDate() - 29);"
        " return d.toISOString().slice(0, 10); })()"
    )
    totals = stack.api("GET", f"/v1/usage?start={start}", stack.admin_key).json()["totals"]
    assert totals["requests"] >= 3
    assert shown["requests"] == str(totals["requests"])
    assert shown["errors"] == str(totals["errors"])
    assert shown["tokens"] == str(totals["total_tokens"])
    assert float(shown["cost"]) == pytest.approx(totals["cost_usd"], abs=1e-6)
    expect(page.get_by_test_id("health")).to_contain_text("database: ok")
    expect(page.get_by_test_id("provider-health")).to_contain_text("openai: ok")
    # And the per-day breakdown draws one line per model, provider or key
    breakdown = page.get_by_test_id("breakdown")
    expect(breakdown.get_by_role("img")).to_have_attribute(
        "aria-label", "Requests per day by model (top 5)"
    )
    expect(breakdown).to_contain_text("gpt-test")
    page.get_by_label("Breakdown by").select_option("provider")
    page.get_by_label("Breakdown measure").select_option("cost_usd")
    expect(breakdown).to_contain_text("openai")
    # And the admin sees latency percentiles by provider and model
    expect(page.get_by_test_id("latency")).to_contain_text("provider: openai")
    expect(page.get_by_test_id("latency")).to_contain_text("model: gpt-test")


def test_non_admin_sees_no_admin_pages_and_the_api_refuses_them(page: Any, stack: Stack) -> None:
    login(page, stack, stack.user_key)
    nav = page.get_by_role("list", name="Pages")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(nav.get_by_role("link", name="Keys")).to_have_count(0)
    expect(page.get_by_test_id("worker-models")).to_have_count(0)
    expect(page.get_by_test_id("latency")).to_have_count(0)
    # This key has made no call: the dashboard's empty state
    expect(page.get_by_text("No requests in this range yet.")).to_be_visible()
    # Typing the URL of an admin page shows a refusal, not the page
    page.goto(stack.app + "#/keys")
    expect(page.get_by_test_id("not-allowed")).to_be_visible()
    page.goto(stack.app + "#/models")
    expect(page.get_by_test_id("models")).to_be_visible()
    expect(page.get_by_test_id("models-check")).to_have_count(0)
    expect(page.get_by_test_id("deployments")).to_have_count(0)
    # And the API refuses every admin route for this key
    for method, path, body in (
        ("GET", "/v1/keys", None),
        ("GET", "/v1/admin/worker/models", None),
        ("POST", "/v1/admin/worker/models/unload", {"model": "smollm2-135m"}),
        ("POST", "/v1/admin/models/check", {"content": "version: 1"}),
        ("GET", "/v1/admin/latency", None),
        ("GET", "/v1/admin/deployments", None),
    ):
        refused = stack.api(method, path, stack.user_key, body)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "insufficient_scope"


def test_usage_table_and_csv_export(page: Any, stack: Stack) -> None:
    stack.api(
        "POST",
        "/v1/chat/completions",
        stack.admin_key,
        {"model": "gpt-test", "messages": [{"role": "user", "content": "usage row"}]},
    )
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("Group by").select_option("model")
    page.get_by_label("Key id").fill(
        stack.api("GET", "/v1/me", stack.admin_key).json()["api_key_id"]
    )
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("usage-rows")).to_contain_text("gpt-test")
    screenshot(page, "usage")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    with open(download.value.path(), encoding="utf-8") as file:
        text = file.read()
    assert text.startswith('"model","requests","errors"')
    assert '"gpt-test"' in text


def test_models_page_lists_the_registry_and_checks_a_pasted_file(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Models").click()
    expect(page.get_by_test_id("models")).to_contain_text("smollm2-135m")
    expect(page.get_by_test_id("models")).to_contain_text("gpt-test")
    expect(page.get_by_test_id("deployments")).to_contain_text("smollm2-135m")
    page.get_by_label("models.yaml content").fill(
        "version: 1\nmodels:\n  - id: a\n    provider: openai\n    model: m\n"
        "    pricing: {input: -1, output: 1}\n"
    )
    page.get_by_role("button", name="Check").click()
    expect(page.get_by_test_id("problems")).to_contain_text("models.yaml:6")
    screenshot(page, "models")


def test_unbuilt_features_say_so(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    for title in ("Capabilities", "Reviews", "Pipelines", "Batches"):
        page.get_by_role("link", name=title).click()
        expect(page.get_by_test_id("not-built")).to_contain_text("Not built yet")
    screenshot(page, "not-built")


def test_phone_width_fits_and_the_menu_works(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        login(phone, stack, stack.admin_key)
        nav = phone.get_by_role("list", name="Pages")
        expect(nav).to_be_hidden()
        phone.get_by_role("button", name="Menu").click()
        nav.get_by_role("link", name="Chat").click()
        expect(phone.get_by_label("Message")).to_be_visible()
        for route in ("#/", "#/chat", "#/prompts", "#/keys", "#/usage", "#/models"):
            phone.goto(stack.app + route)
            phone.wait_for_load_state("networkidle")
            overflow = phone.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, (route, overflow)
        phone.goto(stack.app + "#/")
        phone.get_by_test_id("totals").wait_for()
        screenshot(phone, "dashboard-phone")
    finally:
        context.close()


def test_keyboard_reaches_sign_in_and_the_pages(page: Any, stack: Stack) -> None:
    page.goto(stack.app)
    # The credential field has the focus from the start
    expect(page.get_by_label("API key or JWT")).to_be_focused()
    page.keyboard.type(stack.admin_key)
    page.keyboard.press("Enter")
    page.get_by_test_id("whoami").wait_for()
    # Tab from the top reaches the skip link, then the page links
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_role("link", name="Prompts").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Prompts")).to_be_visible()


def test_a_credential_revoked_while_signed_in_returns_to_sign_in(page: Any, stack: Stack) -> None:
    key = stack.new_key("short-lived", [], principal="temp@example.com")
    login(page, stack, key)
    key_id = stack.api("GET", "/v1/me", key).json()["api_key_id"]
    # When an admin revokes it while its page is open
    assert stack.api("DELETE", f"/v1/keys/{key_id}", stack.admin_key).status_code == 200
    page.get_by_role("link", name="Usage").click()
    # Then the next call's 401 signs the tab out, saying why
    expect(page.get_by_test_id("login-notice")).to_contain_text("no longer accepted")
    assert session_storage(page) == {}


def test_an_api_error_is_shown_with_its_message(page: Any, stack: Stack) -> None:
    login(page, stack, stack.admin_key)
    page.get_by_role("link", name="Usage").click()
    page.get_by_label("From").fill("2026-02-01")
    page.get_by_label("To (exclusive)").fill("2026-01-01")
    page.get_by_role("button", name="Apply").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("(400)")
    expect(alert).to_contain_text("'end' must be after 'start'")


def test_long_lists_load_page_by_page(page: Any, stack: Stack) -> None:
    # Given 53 sessions and 103 prompts of one principal (pages of 50 and 100)
    key = stack.new_key("many", ["prompts:write"], principal="many@example.com")
    for n in range(53):
        made = stack.api("POST", "/v1/sessions", key, {"model": "gpt-test", "title": f"s{n}"})
        assert made.status_code == 201, made.text
    for n in range(103):
        made = stack.api("POST", "/v1/prompts", key, {"slug": f"p{n:03d}", "template": "x"})
        assert made.status_code == 201, made.text
    login(page, stack, key)
    page.get_by_role("link", name="Chat").click()
    sessions = page.get_by_test_id("sessions").locator("li")
    expect(sessions).to_have_count(50)
    page.get_by_role("button", name="Load more").click()
    expect(sessions).to_have_count(53)
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)
    page.get_by_role("link", name="Prompts").click()
    prompts = page.get_by_test_id("prompt-list").locator("li")
    expect(prompts).to_have_count(100)
    page.get_by_role("button", name="Load more").click()
    expect(prompts).to_have_count(103)
    page.get_by_label("Search prompts").fill("p10")
    expect(prompts).to_have_count(3)  # p100, p101, p102
