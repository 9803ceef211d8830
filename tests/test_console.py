"""The command display: plain lines for pipes, nothing when quiet, stage times in the summary."""

from __future__ import annotations

import io
import json

from rich.console import Console

from pipeline.console import (
    Display,
    StageProbe,
    choose_mode,
    files_probe,
    human_number,
    human_seconds,
    last_metrics,
    pretrain_probe,
)


class Counter:
    def __init__(self, total: int):
        self.done, self.total = 0, total

    def __call__(self):
        return self.done, self.total, f"item {self.done}"


def _display(mode: str, *probes: tuple[str, Counter]) -> tuple[Display, io.StringIO]:
    out = io.StringIO()
    stages = [StageProbe(name, "units", probe) for name, probe in probes]
    return Display(stages, mode=mode, interval=3600, console=Console(file=out, width=200)), out


def test_plain_mode_prints_progress_lines_and_a_summary_with_stage_times():
    first, second = Counter(4), Counter(2)
    display, out = _display("plain", ("generate", first), ("pretrain", second))
    with display:
        for i in range(1, 5):
            first.done = i
            display.poll()
        second.done = 2
        display.poll()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("generate: 1/4 units, ") and "ETA" in lines[0] and lines[0].endswith("(item 1)")
    assert any(line.startswith("generate: 4/4 units") and "done in" in line for line in lines)
    assert any(line.startswith("pretrain: 2/2 units") for line in lines)
    assert not any(" | INFO " in line for line in lines)
    summary = display.summary_lines()
    assert summary[0].startswith("generate  4/4 units in ") and summary[1].startswith("pretrain  2/2 units in ")


def test_a_later_stage_waits_for_the_earlier_one_and_skips_are_shown():
    first, second = Counter(3), Counter(2)
    display, out = _display("plain", ("generate", first), ("pretrain", second))
    display.skip("generate", "skipped (corpus complete)")
    second.done = 1
    display.poll()
    assert "generate: skipped (corpus complete)" in out.getvalue()
    assert "pretrain: 1/2 units" in out.getvalue()
    display2, out2 = _display("plain", ("generate", first), ("pretrain", Counter(2)))
    display2.poll()  # generate at 0/3: pretrain is not started
    assert "pretrain" not in out2.getvalue()


def test_quiet_mode_prints_nothing_and_modes_are_chosen_from_the_stream():
    counter = Counter(1)
    display, out = _display("quiet", ("generate", counter))
    with display:
        counter.done = 1
    assert out.getvalue() == "" and display.summary_lines()[0].startswith("generate  1/1 units")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert choose_mode(stream=Tty()) == "live" and choose_mode(stream=io.StringIO()) == "plain"
    assert choose_mode(plain=True, stream=Tty()) == "plain" and choose_mode(quiet=True, stream=Tty()) == "quiet"


def test_live_mode_draws_bars_with_rate_and_eta():
    counter = Counter(4)
    out = io.StringIO()
    display = Display([StageProbe("generate", "units", counter)], mode="live", interval=3600,
                      console=Console(file=out, width=160, force_terminal=True))
    with display:
        counter.done = 2
        display.poll()
    text = out.getvalue()
    assert "generate" in text and "2/4" in text and "ETA" in text and "units/s" in text


def test_probes_read_the_run_folder(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    assert last_metrics(metrics)["step"] == 5  # a torn last line is skipped
    probe = pretrain_probe({"croco_v2": metrics, "mae": tmp_path / "none.jsonl"}, 10, lambda m: False)
    assert probe() == (5, 20, "croco_v2 step 5, loss 0.2000")
    results = [tmp_path / f"r{i}.json" for i in range(3)]
    results[1].write_text("{}")
    assert files_probe(results, lambda p: p.stem)() == (1, 3, "r1")


def test_numbers_and_durations_for_people():
    assert human_seconds(3.21) == "3.2 s" and human_seconds(47.4) == "47 s"
    assert human_seconds(185) == "3 min 05 s" and human_seconds(3720) == "1 h 02 min"
    assert human_number(0.123456789) == "0.123" and human_number(12) == "12" and human_number(2.0) == "2"
    assert human_number(39312.7) == "39313" and human_number(1.23456, 2) == "1.2"
