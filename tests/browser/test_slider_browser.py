"""The threshold slider of notebook 02 in a real browser (``make browser``; part of ``make test``).

JupyterLab on 127.0.0.1 serves a trimmed copy of notebook 02 (parameters, setup, load, the assignments the slider
cell needs, the slider cell, and a last cell that prints what the kernel holds) in smoke mode; headless Chromium
(Debian's package, driven by Playwright) opens it, runs all cells from the Run menu, waits for the widget, drags
the slider's handle with the mouse, then presses ArrowRight/ArrowLeft on it, each time waiting until the readout
under the slider changes. The check fails unless the widget renders (slider, readout, plot), the numbers change after
the drag and after every key, and the readout's tau, sparsity and accuracy match what the kernel holds.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from jupyter_browser import ARTIFACTS, STATE_MARK, TIMEOUT, Problem

pytestmark = pytest.mark.browser

READOUT = re.compile(r"tau\s*=\s*(?P<tau>-?[\d.]+).*?sparsity\s+(?P<sparsity>-?[\d.]+)%.*?"
                     r"test accuracy\s+(?P<accuracy>-?[\d.]+)%", re.S)
RUN_TIMEOUT = 120_000  # ms: the trimmed notebook, smoke mode, on a busy 2-core machine
UPDATE_TIMEOUT = 30_000  # ms: one move of the slider (prune a copy, evaluate, draw)


def _places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


class Slider:
    """The slider cell's widget in the page."""

    def __init__(self, page, budget):
        self.page, self.budget = page, budget
        self.box = page.locator(".jp-Cell .widget-interact").first
        self.slider = self.box.locator(".widget-slider").first
        self.handle = self.slider.locator(".noUi-handle").first
        self.track = self.slider.locator(".noUi-target").first
        self.value_box = self.slider.locator(".widget-readout").first
        self.readout = self.box.locator(".widget-html").first
        self.output = self.box.locator(".widget-output").first

    def text(self) -> str:
        return " ".join(self.readout.inner_text().split())

    def numbers(self) -> dict[str, str]:
        """The readout's tau, sparsity (%) and accuracy (%) as shown, plus the slider's own value box."""
        text = self.text()
        m = READOUT.search(text)
        if not m:
            raise Problem(f"the readout under the slider does not show tau, sparsity and accuracy: {text!r}")
        return {**m.groupdict(), "box": self.value_box.inner_text().strip()}

    def wait_change(self, before: str, what: str) -> dict[str, str]:
        """Wait until the readout's text differs from ``before`` (the kernel answered the move); its numbers then.
        The callback sets the readout before it draws the plot; the kernel-state cell waits for the rest."""
        try:
            self.page.wait_for_function(
                "([el, before]) => el.innerText.replace(/\\s+/g, ' ').trim() !== before",
                arg=[self.readout.element_handle(), before], timeout=self.budget.ms(UPDATE_TIMEOUT))
        except Exception as e:  # noqa: BLE001 - Playwright's TimeoutError, or the page gone
            raise Problem(f"the readout did not change after {what}; it still reads {before!r}") from e
        return self.numbers()


def kernel_state(page, after: int, budget) -> tuple[dict, int]:
    """Run the last cell (what the kernel holds) and read its printout once its execution count exceeds ``after``;
    ``(state, execution count)``."""
    cell = page.locator(".jp-Notebook .jp-Cell").last
    prompt = cell.locator(".jp-InputPrompt")
    out = cell.locator(".jp-OutputArea-output")
    deadline = time.monotonic() + budget.ms(UPDATE_TIMEOUT) / 1000
    while time.monotonic() < deadline:
        count = re.sub(r"\D", "", prompt.inner_text())
        lines = [t for t in out.all_inner_texts() if STATE_MARK in t]
        if count and int(count) > after and lines:
            return json.loads(lines[-1].split(STATE_MARK, 1)[1].strip().splitlines()[0]), int(count)
        time.sleep(0.2)
    raise Problem(f"the kernel-state cell printed no {STATE_MARK} line: {' | '.join(out.all_inner_texts())!r}")


def compare(shown: dict[str, str], state: dict, when: str) -> None:
    """The page's numbers equal the kernel's to the precision shown."""
    if not state["settled"]:
        raise Problem(f"{when}, the slider's callback had not finished {state['waited']:.0f} s later: the kernel's "
                      f"slider value is {state['value']!r} but slider.result is {state['result']!r}")
    res = state["result"]
    pairs = [("tau (readout)", shown["tau"], res["tau"]), ("tau (slider)", shown["box"], state["value"]),
             ("sparsity %", shown["sparsity"], 100 * res["sparsity"]),
             ("accuracy %", shown["accuracy"], 100 * res["accuracy"])]
    wrong = [f"{name}: page {text}, kernel {value!r}" for name, text, value in pairs
             if abs(float(text) - value) > 0.5 * 10 ** -_places(text) + 1e-9]
    if abs(res["tau"] - state["value"]) > 1e-9:
        wrong.append(f"kernel: slider.result['tau'] = {res['tau']!r} but the slider's value is {state['value']!r}")
    if wrong:
        raise Problem(f"{when}, the page and the kernel disagree: " + "; ".join(wrong))


def test_slider_in_real_browser(browser_run):
    lab, page, budget = browser_run
    step = "opening the notebook"
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    try:
        page.goto(lab.url("lab/tree/slider.ipynb"), wait_until="domcontentloaded", timeout=budget.ms(60_000))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=budget.ms(60_000))
        step = "waiting for the kernel"
        # the status bar reads "No Kernel | Initializing", then "<kernel name> | Idle" once the kernel is connected
        # (the toolbar's execution indicator says idle before there is a kernel: not a signal)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some("
            "e => /\\| Idle$/.test(e.textContent.trim()) && !e.textContent.startsWith('No Kernel'))",
            timeout=budget.ms(60_000))
        timings["kernel ready"] = time.monotonic() - t0

        step = "running all cells from the Run menu"
        first_prompt = page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt")
        for attempt in (1, 2):
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            try:  # the first cell shows [*] or [1] once its execution is under way
                page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.innerText)",
                                       arg=first_prompt.element_handle(), timeout=budget.ms(15_000))
                break
            except Exception as e:  # noqa: BLE001 - Playwright's TimeoutError
                if attempt == 2:
                    raise Problem("Run > Run All Cells started no cell (twice)") from e
        sl = Slider(page, budget)
        step = "waiting for the slider widget"
        try:
            sl.handle.wait_for(state="visible", timeout=budget.ms(RUN_TIMEOUT))
            sl.readout.wait_for(state="visible", timeout=budget.ms(UPDATE_TIMEOUT))
        except Exception as e:  # noqa: BLE001
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            raise Problem("the slider widget did not render: no .widget-slider handle in the output "
                          f"(errors in the page: {' | '.join(errors.all_inner_texts())[-1500:]!r})") from e
        page.wait_for_function("el => /tau\\s*=.*sparsity.*accuracy/s.test(el.innerText)",
                               arg=sl.readout.element_handle(), timeout=budget.ms(UPDATE_TIMEOUT))
        start = sl.numbers()
        state, count = kernel_state(page, 0, budget)
        compare(start, state, "after Run All")
        timings["slider shown"] = time.monotonic() - t0
        plots = bool(state["plots"])
        if plots:  # the widget's Output shows the histogram and the curve
            sl.output.locator("img").first.wait_for(state="visible", timeout=budget.ms(UPDATE_TIMEOUT))

        step = "dragging the slider's handle"
        sl.handle.scroll_into_view_if_needed()
        hb, tb = sl.handle.bounding_box(), sl.track.bounding_box()
        if not hb or not tb or tb["width"] < 50:
            raise Problem(f"the slider is not laid out (handle {hb}, track {tb})")
        span = state["max"] - state["min"]
        target = 0.75 if (state["value"] - state["min"]) / span < 0.5 else 0.25
        before = sl.text()
        page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
        page.mouse.down()
        page.mouse.move(tb["x"] + target * tb["width"], hb["y"] + hb["height"] / 2, steps=12)
        page.mouse.up()
        dragged = sl.wait_change(before, "dragging the handle")
        if dragged["tau"] == start["tau"] or dragged["sparsity"] == start["sparsity"]:
            raise Problem(f"after the drag tau/sparsity did not change: {start} -> {dragged}")
        timings["drag"] = time.monotonic() - t0

        step = "pressing arrow keys on the slider"
        sl.handle.focus()
        now, moves = dragged, []
        for key, sign in (("ArrowRight", 1), ("ArrowRight", 1), ("ArrowLeft", -1)):
            before = sl.text()
            page.keyboard.press(key)
            after = sl.wait_change(before, f"pressing {key}")
            delta = float(after["tau"]) - float(now["tau"])
            if abs(delta - sign * state["step"]) > 0.5 * 10 ** -_places(after["tau"]) + 1e-9:
                raise Problem(f"{key} moved tau from {now['tau']} to {after['tau']}, not by one step "
                              f"({sign * state['step']:+g})")
            if after["box"] != after["tau"]:
                raise Problem(f"after {key} the slider shows {after['box']} but the readout tau = {after['tau']}")
            moves.append(f"{key}: {now['tau']} -> {after['tau']}")
            now = after
        timings["keys"] = time.monotonic() - t0

        step = "reading what the kernel holds"
        page.keyboard.press("Escape")
        last = page.locator(".jp-Notebook .jp-Cell").last
        last.locator(".jp-InputPrompt").click()
        page.keyboard.press("Control+Enter")
        state, _ = kernel_state(page, count, budget)
        compare(now, state, "after the drag and the arrow keys")
        if abs(state["value"] - float(start["tau"])) < 1e-9:
            raise Problem(f"the kernel's slider value {state['value']} is still the initial one")
        if plots and not state["plots"]:
            raise Problem("the widget's Output holds no plot after the moves (it did after Run All)")
        if plots:
            sl.output.locator("img").first.wait_for(state="visible", timeout=budget.ms(UPDATE_TIMEOUT))
        timings["compared"] = time.monotonic() - t0
        print(f"\nbrowser check: {start['tau']} -> drag {dragged['tau']} -> {'; '.join(moves)}; kernel "
              f"tau={state['value']}, sparsity={state['result']['sparsity']:.4f}, "
              f"accuracy={state['result']['accuracy']:.4f} (its callback settled {state['waited']:.2f} s into the "
              f"state cell); " +
              ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    except Exception as e:
        _leave_artifacts(page, lab)
        where = f"screenshot, page text and server log in {ARTIFACTS}"
        if budget.fired or budget.left() < 1.5:
            raise Problem(f"the browser check ran out of its {TIMEOUT:.0f} s (COURSE_BROWSER_TIMEOUT) while {step}: "
                          f"{e} ({where})") from e
        detail = str(e) if isinstance(e, Problem) else f"{type(e).__name__}: {e}"
        raise Problem(f"while {step}: {detail} ({where})") from e


def _leave_artifacts(page, lab) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        (ARTIFACTS / "jupyterlab.log").write_text(lab.log_path.read_text(errors="replace"))
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True, timeout=5_000)
        (ARTIFACTS / "failure-page.txt").write_text(page.locator("body").inner_text(timeout=5_000))
    except Exception:  # noqa: BLE001 - the page may be gone (watchdog, crash)
        pass
