"""The Blender output parser, on lines of Blender 2.8x, 3.x, 4.x and 5.x.

The 3.4 lines were captured from Debian's Blender 3.4.1 rendering the test
scene; the others follow those versions' formats (2.8x tiles, EEVEE's
"Rendering N / M samples", 5.x's logger prefix and "Fra: N |")."""
import pytest

from fworker.commands import blender_output as bo
from tests.support.waiting import wait_until

# Captured: blender --background "tiny scene.blend" -o .../frame_#### -F PNG -f 1..2 (lines cut).
BLENDER_34_TWO_FRAMES = """\
Blender 3.4.1
Read blend: /tmp/cap/tiny scene.blend
Fra:1 Mem:9.04M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:1 Mem:8.90M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Loading render kernels (may take a few minutes the first time)
Fra:1 Mem:9.40M (Peak 10.83M) | Time:00:00.06 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Updating Scene BVH | Building BVH 0%
Fra:1 Mem:9.90M (Peak 10.83M) | Time:00:00.06 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 0/4
Fra:1 Mem:9.99M (Peak 10.83M) | Time:00:00.06 | Remaining:00:00.00 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Sample 1/4
Fra:1 Mem:10.02M (Peak 10.83M) | Time:00:00.06 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Sample 4/4
Fra:1 Mem:10.02M (Peak 10.83M) | Time:00:00.06 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Finished
Saved: '/tmp/cap/out/frame_0001.png'
 Time: 00:00.19 (Saving: 00:00.13)

Fra:2 Mem:9.29M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer | Synchronizing object | Cube
Fra:2 Mem:9.90M (Peak 10.83M) | Time:00:00.00 | Mem:0.76M, Peak:0.76M | Scene, ViewLayer | Sample 0/4
Fra:2 Mem:9.99M (Peak 10.83M) | Time:00:00.00 | Remaining:00:00.00 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Sample 1/4
Fra:2 Mem:10.02M (Peak 10.83M) | Time:00:00.00 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Sample 4/4
Fra:2 Mem:10.02M (Peak 10.83M) | Time:00:00.00 | Mem:0.84M, Peak:0.84M | Scene, ViewLayer | Finished
Saved: '/tmp/cap/out/frame_0002.png'
 Time: 00:00.00 (Saving: 00:00.00)


Blender quit
""".splitlines()

# Blender 5.x: every message behind the logger's time and category prefix.
BLENDER_5_ONE_FRAME = """\
Blender 5.3.0
00:00.412  blend            | Read blend: "/render/shot 01.blend"
00:00.520  render           | Fra: 1 | Mem:35.27M (Peak 37.10M) | Time:00:00.05 | Mem:2.41M, Peak:2.41M | Scene, ViewLayer | Sample 0/16
00:00.601  render           | Fra: 1 | Mem:35.27M (Peak 37.10M) | Time:00:00.13 | Remaining:00:00.21 | Mem:2.41M, Peak:2.41M | Scene, ViewLayer | Sample 8/16
00:00.670  render           | Saved: '/render/out/frame_0001.png'
00:00.671  render           |  Time: 00:00.33 (Saving: 00:00.26)
Blender quit
""".splitlines()


def feed_all(output, lines):
    return [output.feed(line) for line in lines]


# --- single lines -------------------------------------------------------------


@pytest.mark.parametrize("line, frame, status, fraction", [
    # 3.4 (captured)
    (("Fra:1 Mem:9.99M (Peak 10.83M) | Time:00:00.06 | Remaining:00:00.00 | Mem:0.84M, Peak:0.84M"
      " | Scene, ViewLayer | Sample 1/4"), 1, "Sample 1/4", 0.25),
    (("Fra:2 Mem:9.40M (Peak 10.83M) | Time:00:00.05 | Mem:0.00M, Peak:0.00M | Scene, ViewLayer"
      " | Updating Objects | Copying Transformations to device"), 2, "Copying Transformations to device", None),
    ("Fra:1 Mem:9.32M (Peak 9.34M) | Time:00:00.00 | Compositing | Tile 1-1", 1, "Tile 1-1", None),
    # 2.8x Cycles with tiles
    (("Fra:1 Mem:21.43M (Peak 21.69M) | Time:00:00.43 | Remaining:00:01.12 | Mem:2.53M, Peak:2.53M"
      " | Scene, View Layer | Rendered 3/8 Tiles, Sample 16/16"), 1, "Rendered 3/8 Tiles, Sample 16/16", 3 / 8),
    (("Fra:12 Mem:21.43M (Peak 21.69M) | Time:00:00.10 | Remaining:00:00.95 | Mem:2.53M, Peak:2.53M"
      " | Scene, View Layer | Path Tracing Tile 2/8, Sample 4/16"), 12, "Path Tracing Tile 2/8, Sample 4/16",
     (1 + 4 / 16) / 8),
    # EEVEE (2.8x to 4.x)
    ("Fra:1 Mem:45.22M (Peak 46.01M) | Time:00:01.37 | Rendering 26 / 64 samples", 1,
     "Rendering 26 / 64 samples", 26 / 64),
    # 4.x Cycles
    (("Fra:250 Mem:35.27M (Peak 37.10M) | Time:00:00.31 | Mem:2.41M, Peak:2.41M | Scene, ViewLayer"
      " | Sample 12/64"), 250, "Sample 12/64", 12 / 64),
    # 5.x: logger prefix and a space after "Fra:"
    ("00:00.670  render           | Fra: 7 | Mem:35.27M (Peak 37.10M) | Time:00:00.31 | Sample 3/16",
     7, "Sample 3/16", 3 / 16),
    # a negative frame number is valid in Blender
    ("Fra:-5 Mem:9.99M (Peak 10.83M) | Time:00:00.06 | Sample 2/4", -5, "Sample 2/4", 0.5),
])
def test_stats_lines(line, frame, status, fraction):
    parsed = bo.parse_line(line)
    assert parsed.kind == bo.STATS
    assert parsed.frame == frame
    assert parsed.status == status
    assert parsed.fraction == pytest.approx(fraction) if fraction is not None else parsed.fraction is None


@pytest.mark.parametrize("line, path", [
    ("Saved: '/tmp/cap/out/frame_0001.png'", "/tmp/cap/out/frame_0001.png"),  # 3.4, captured
    ("Saved: '/render/shot 01/it's here_0001.exr'", "/render/shot 01/it's here_0001.exr"),  # a quote inside
    ("Saved: '/render/out/0001.png' Time: 00:01.23 (Saving: 00:00.10)", "/render/out/0001.png"),  # 2.7x/2.8x
    ("00:00.670  render           | Saved: '/render/out/frame_0001.png'", "/render/out/frame_0001.png"),  # 5.x
    ("Saved: '/render/ünï/帧_0001.png'", "/render/ünï/帧_0001.png"),
])
def test_saved_lines(line, path):
    parsed = bo.parse_line(line)
    assert (parsed.kind, parsed.path) == (bo.SAVED, path)


@pytest.mark.parametrize("line, kind", [
    ("Read blend: /tmp/cap/tiny scene.blend", bo.READ_BLEND),  # 3.4, captured
    ("Warning: Path '/tmp/cap/textures/missing tex.png' not found", bo.WARNING),  # 3.4, captured
    ("Warning: Unable to open '/textures/wood.png'", bo.WARNING),
    ("Error: Build without OpenImageDenoiser", bo.ERROR),  # 3.4, captured
    ("Error: Cannot read file '/tmp/cap/nope.blend': No such file or directory", bo.ERROR),  # 3.4, captured
    ("Error: Python: Traceback (most recent call last):", bo.ERROR),  # 3.4, captured
    ("RuntimeError: input image does not exist: '/x/p_0003.exr'", bo.ERROR),  # 3.4, captured
    ("ModuleNotFoundError: No module named 'numpy'", bo.ERROR),  # 3.4, captured
    ("00:00.100  blend            | ERROR Cannot read file \"/x.blend\": No such file or directory", bo.ERROR),
    ("Append frame 2", bo.APPEND),  # 3.4 movie output, captured
    ("fworker: produced '/out/merged 0001.exr'", bo.PRODUCED),
    (" Time: 00:00.19 (Saving: 00:00.13)", bo.FRAME_TIME),  # 3.4, captured: a leading space
    ("00:00.419  render           | Time: 00:01.06 (Saving: 00:00.02)", bo.FRAME_TIME),  # 5.x
    ('skipping existing frame "/tmp/c3/out/f_0001.png"', bo.SKIPPED),  # 3.4, captured
    ('00:00.419  render           | Skipping existing frame "/out/f_0001.png"', bo.SKIPPED),  # 5.x
    ("Info: No frames rendered, skipped to not overwrite", bo.OTHER),  # 3.4, captured
    ("Blender quit", bo.OTHER),
    ("Build without OpenImageDenoiser", bo.OTHER),  # the stderr twin of the Error: line
    ("Info: Saved \"tiny scene.blend\"", bo.OTHER),  # not a render's Saved: '...'
])
def test_other_kinds(line, kind):
    assert bo.parse_line(line).kind == kind


def test_read_blend_path_unquoted_in_every_version():
    assert bo.parse_line("Read blend: /tmp/cap/tiny scene.blend").path == "/tmp/cap/tiny scene.blend"
    assert bo.parse_line('Read blend: "/render/shot 01.blend"').path == "/render/shot 01.blend"
    assert bo.parse_line(BLENDER_5_ONE_FRAME[1]).path == "/render/shot 01.blend"


def test_log_prefix_is_not_cut_from_3x_lines():
    line = "Fra:1 Mem:9.99M (Peak 10.83M) | Time:00:00.06 | Sample 1/4"
    assert bo.strip_log_prefix(line) == line
    assert bo.strip_log_prefix("12:34.567  render.cycles     | Sample 1/4") == "Sample 1/4"


# --- a whole run ----------------------------------------------------------------


def test_blender_34_two_frames():
    output = bo.BlenderOutput(frames_total=2)
    updates = feed_all(output, BLENDER_34_TWO_FRAMES)
    assert output.outputs == ["/tmp/cap/out/frame_0001.png", "/tmp/cap/out/frame_0002.png"]
    assert [u.output for u in updates if u.output] == output.outputs
    assert output.frames_done == 2 and output.saved_count == 2
    percents = [u.percent for u in updates if u.percent is not None]
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert 12 in percents  # frame 1 at sample 1/4: 0.25 of 2 frames
    assert 50 in percents  # frame 1 saved
    assert [u.phase for u in updates if u.phase is not None] == ["", "loading blendfile", "rendering"]
    activities = [u.activity for u in updates if u.activity]
    assert "Blender: frame 1 (1/2): Sample 1/4" in activities
    assert "Blender: frame 2 (2/2): Sample 4/4" in activities
    assert "Blender saved /tmp/cap/out/frame_0002.png (2/2)" in activities
    assert output.errors == []


def test_blender_5_one_frame():
    output = bo.BlenderOutput(frames_total=1)
    updates = feed_all(output, BLENDER_5_ONE_FRAME)
    assert output.outputs == ["/render/out/frame_0001.png"]
    assert [u.percent for u in updates if u.percent is not None] == [0, 50, 100]
    assert [u.phase for u in updates if u.phase is not None] == ["", "loading blendfile", "rendering"]


def test_workbench_has_no_stats_lines_frames_counted_by_saved():
    output = bo.BlenderOutput(frames_total=3)
    updates = feed_all(output, ["Read blend: /x.blend", "Saved: '/o/1.png'", "Saved: '/o/2.png'",
                                "Saved: '/o/3.png'", "Blender quit"])
    assert output.frames_done == 3
    assert [u.percent for u in updates if u.percent is not None] == [0, 33, 66, 100]


def test_a_frame_is_done_when_the_next_starts_even_unsaved():
    output = bo.BlenderOutput(frames_total=2)
    feed_all(output, ["Fra:1 Mem:1M (Peak 1M) | Time:00:00.01 | Sample 4/4", "Fra:2 Mem:1M (Peak 1M) | Sample 0/4"])
    assert output.frames_done == 1


def test_movie_frames_count_as_saved_but_are_no_output_files():
    output = bo.BlenderOutput(frames_total=2)
    feed_all(output, ["Append frame 1", "Append frame 2"])
    assert output.saved_count == 2 and output.frames_done == 2 and output.outputs == []


def test_saved_lines_of_temporary_files_are_not_outputs_for_scripts():
    output = bo.BlenderOutput(frames_total=1, saved_is_output=False)
    updates = feed_all(output, ["Saved: '/o/.merge-x1.exr'", "fworker: produced '/o/merged.exr'"])
    assert output.outputs == ["/o/merged.exr"]
    assert [u.output for u in updates] == [None, "/o/merged.exr"]


def test_errors_and_warnings_are_sticky_activities_and_errors_remembered():
    output = bo.BlenderOutput()
    warn, err, plain = feed_all(output, ["Warning: Path '/t/x.png' not found",
                                         "Error: Build without OpenImageDenoiser", "Blender quit"])
    assert warn.sticky and warn.activity == "Blender: Warning: Path '/t/x.png' not found"
    assert err.sticky and "OpenImageDenoiser" in err.activity
    assert plain.activity is None
    assert output.errors == ["Error: Build without OpenImageDenoiser"]


def test_no_percent_without_a_known_frame_count():
    output = bo.BlenderOutput(frames_total=None)
    assert all(u.percent is None for u in feed_all(output, BLENDER_34_TWO_FRAMES))


# --- frame specs ----------------------------------------------------------------


@pytest.mark.parametrize("spec, count", [
    ("1", 1), ("1..4", 4), ("1,3,5..8", 6), (" 1, 2 ", 2), ("+1..+3", 3), ("-3..-1", 3),
    ("-5..-2", 4), ("1..-1", None), ("0..0", 1), ("-10..-8,1", 4),
])
def test_count_frames(spec, count):
    assert bo.count_frames(spec) == count


@pytest.mark.parametrize("spec", ["", "1-3", "a", "1...3", "1..", "5..3", "1,,2"])
def test_bad_frame_specs(spec):
    with pytest.raises(ValueError):
        bo.parse_frames(spec)


# --- the activity throttle --------------------------------------------------------


class FakeTimers:
    def __init__(self):
        self.now = 100.0
        self.timers = []  # [due, fn, cancelled]

    def clock(self):
        return self.now

    def call_later(self, delay, fn):
        timer = [self.now + delay, fn, False]
        self.timers.append(timer)
        return lambda: timer.__setitem__(2, True)

    def advance(self, seconds):
        self.now += seconds
        for timer in list(self.timers):
            if timer[0] <= self.now and not timer[2]:
                self.timers.remove(timer)
                timer[1]()


def make_throttle(interval=2.0):
    timers, sent = FakeTimers(), []
    throttle = bo.ActivityThrottle(sent.append, interval, clock=timers.clock, call_later=timers.call_later)
    return throttle, timers, sent


def test_throttle_first_at_once_then_the_latest_when_the_interval_ends():
    throttle, timers, sent = make_throttle()
    throttle.submit("a")
    throttle.submit("b")
    throttle.submit("c")
    assert sent == ["a"]
    timers.advance(1.9)
    assert sent == ["a"]
    timers.advance(0.1)  # never starved: "c" goes out without a new line arriving
    assert sent == ["a", "c"]
    timers.advance(10)
    assert sent == ["a", "c"]
    throttle.submit("d")  # the interval has passed: at once
    assert sent == ["a", "c", "d"]


def test_throttle_keeps_a_warning_against_later_progress():
    throttle, timers, sent = make_throttle()
    throttle.submit("progress 1")
    throttle.submit("Warning: Path 'x' not found", sticky=True)
    throttle.submit("progress 2")
    timers.advance(2.0)
    assert sent == ["progress 1", "Warning: Path 'x' not found"]


def test_throttle_close_cancels_or_flushes():
    throttle, timers, sent = make_throttle()
    throttle.submit("a")
    throttle.submit("b")
    throttle.close()
    timers.advance(5)
    assert sent == ["a"]  # cancelled: nothing after the command ended
    throttle, timers, sent = make_throttle()
    throttle.submit("a")
    throttle.submit("b")
    throttle.close(flush=True)
    assert sent == ["a", "b"]


def test_throttle_interval_zero_sends_everything():
    throttle, _, sent = make_throttle(0.0)
    for text in "abc":
        throttle.submit(text)
    assert sent == ["a", "b", "c"]


def test_throttle_with_real_gevent_timers():
    sent = []
    throttle = bo.ActivityThrottle(sent.append, 0.05)
    throttle.submit("a")
    throttle.submit("b")
    assert sent == ["a"]
    # The timer greenlet sends "b" once the interval is over, with no new submit.
    wait_until(lambda: len(sent) == 2, 5, "the held-back activity")
    assert sent == ["a", "b"]


# --- steps (Flamenco 3 counts a frame rendered or skipped) --------------------------------


@pytest.mark.parametrize("lines", [BLENDER_34_TWO_FRAMES, BLENDER_5_ONE_FRAME + BLENDER_5_ONE_FRAME[2:6]],
                         ids=["3.4", "5.x"])
def test_one_step_per_time_line(lines):
    output = bo.BlenderOutput()
    stepped = [line for line, update in zip(lines, feed_all(output, lines), strict=True) if update.step]
    assert len(stepped) == 2 and output.steps == 2
    assert all("Time: 00:" in line and "(Saving:" in line for line in stepped)


def test_stats_lines_are_no_steps():
    # Every stats line has "| Time:" in it; only the frame's closing line is a step.
    output = bo.BlenderOutput()
    assert not any(u.step for u in feed_all(output, [line for line in BLENDER_34_TWO_FRAMES if "Fra:" in line]))
    assert output.steps == 0


def test_skipped_frames_are_steps_and_frames_done():
    output = bo.BlenderOutput(frames_total=3)
    updates = feed_all(output, ["Read blend: /x.blend", 'skipping existing frame "/out/f_0001.png"',
                                '00:00.1  render  | Skipping existing frame "/out/f_0002.png"'])
    assert [u.step for u in updates] == [False, True, True]
    assert output.steps == 2 and output.frames_done == 2
    assert updates[-1].percent == 66
    assert updates[1].activity == 'Blender: skipping existing frame "/out/f_0001.png" (1/3)'
