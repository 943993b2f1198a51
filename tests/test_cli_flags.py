"""Flag values at and beyond their bounds: a bad one is one line naming the flag and what to pass (exit 2,
no traceback); a good one reaches the run as the right value. Also what the scripts print about their
flags: usage metavars, which snapshot a folder gave, and plurals."""

import argparse
import math
import os
import re
import shutil

import pytest
import torch
from helpers import (
    LAYERS,
    RATE,
    STACKS,
    TARGET,
    TINY_CHUNKS,
    TINY_PIXELCNN,
    TINY_WAVENET,
    assert_one_line_error,
    read_log,
    run_main,
)

import infer
import infer_wavenet
import train
import train_wavenet
from wavenet import argtypes, cli, files, preprocessing, receptive_field
from wavenet.errors import UserError

TINY_RUN = [*TINY_PIXELCNN, "-b", "128", "-e", "1"]

# what each script runs on when a flag is accepted: tiny, into the fixture's folder, never ./result
# ({name}: a path of conftest.py's world)
SAFE = {
    "train.py": [*TINY_RUN, "-o", "{tmp}/scratch_pix"],
    "train_wavenet.py": [*TINY_WAVENET, "-b", "16", "-e", "1", "-d", "{data}", "-o", "{tmp}/scratch_wn"],
    "infer.py": ["-m", "{pix}", "-c", "1", "-o", "{tmp}/scratch.png"],
    "infer_wavenet.py": ["-m", "{wn}", "-c", "1", "--length", "40", "-o", "{tmp}/scratch_out"],
    "preprocess.py": ["--data", "{tones}", "--output", "{tmp}/scratch_pre", "--workers", "1", *TINY_CHUNKS],
}
NON_NEGATIVE = "must be zero or a positive finite number, got {value}"
FRACTION = "must be a number between 0 and 1 (both excluded), got {value}"
SEED = "must be an integer from 0 to 4294967295, got {value}"
LEVELS = "must be an integer from 2 to 256, got {value}"
YES_NO = "must be one of 1/true/yes/on or 0/false/no/off, got {value!r}"
# text that is no number: the same message as an out-of-bounds one, the text quoted (argparse alone would
# say "invalid non_negative_int value", the name of a function)
NOT_POSITIVE_INT = "must be a positive integer, got {value!r}"
NOT_NON_NEGATIVE_INT = "must be zero or a positive integer, got {value!r}"


def case(case_id, script, argv, fragment):
    """A CASES row: the script's SAFE flags, then `argv`, which wins where both name a flag."""
    return case_id, script, SAFE[script] + argv, fragment


def bad(case_id, script, flag, value, message, shown_flag=None):
    """A CASES row: `script ... flag value` fails with `argument <flag>: <message>` from argparse."""
    fragment = f"error: argument {shown_flag or flag}: " + message.format(value=value)
    return case(case_id, script, [flag, value], fragment)


# (id, script, argv ({name} from the world fixture), fragment the one error line must hold)
CASES = [
    # 1. --temperature: a finite number >= 0 (as `error: --temperature ...`, the message users already know)
    *(
        case(
            f"temperature-{v}",
            "infer_wavenet.py",
            ["--temperature", v],
            f"error: --temperature {float(v)}: pass 0 or a positive finite number",
        )
        for v in ("nan", "inf", "-0.5")
    ),
    # 2. --val_fraction: strictly between 0 and 1
    *(
        bad(f"val-fraction-{v}", "train_wavenet.py", "--val_fraction", v, FRACTION)
        for v in ("0", "1", "1.5", "-0.1", "nan")
    ),
    # 3. --seed: 0 .. 2**32-1 in all four scripts
    bad("train-seed-negative", "train.py", "--seed", "-1", SEED),
    bad("train-seed-2**32", "train.py", "--seed", "4294967296", SEED),
    bad("wn-seed-negative", "train_wavenet.py", "--seed", "-1", SEED),
    bad("wn-seed-2**32", "train_wavenet.py", "--seed", "4294967296", SEED),
    bad("infer-seed-huge", "infer.py", "--seed", "99999999999999999999", SEED),
    bad("infer-seed-negative", "infer.py", "--seed", "-1", SEED),
    bad("winfer-seed-huge", "infer_wavenet.py", "--seed", "99999999999999999999", SEED),
    # 4. --weight_decay and --gradclip/--clip: finite and >= 0
    bad("train-weight-decay-negative", "train.py", "--weight_decay", "-1", NON_NEGATIVE),
    bad("wn-weight-decay-nan", "train_wavenet.py", "--weight_decay", "nan", NON_NEGATIVE),
    bad("wn-weight-decay-inf", "train_wavenet.py", "--weight_decay", "inf", NON_NEGATIVE),
    bad("train-gradclip-negative", "train.py", "--gradclip", "-1", NON_NEGATIVE, shown_flag="--gradclip/--clip"),
    bad("train-clip-nan", "train.py", "--clip", "nan", NON_NEGATIVE, shown_flag="--gradclip/--clip"),
    bad("wn-clip-negative", "train_wavenet.py", "--clip", "-0.5", NON_NEGATIVE),
    bad(
        "train-learning-rate-inf", "train.py", "--learning_rate", "inf", "must be a positive finite number, got {value}"
    ),
    # 5. --stats VALUE: a yes/no word
    bad("train-stats-other-word", "train.py", "--stats", "maybe", YES_NO),
    # 7. --levels of the audio: 2..256, named as the flag
    bad("pre-levels-1", "preprocess.py", "--levels", "1", LEVELS),
    bad("pre-levels-257", "preprocess.py", "--levels", "257", LEVELS),
    bad("wn-levels-300", "train_wavenet.py", "--levels", "300", LEVELS),
    # 6. text that is no number, for every kind of number flag
    bad("train-keep-word", "train.py", "--keep", "x", NOT_NON_NEGATIVE_INT),
    bad("train-keep-empty", "train.py", "--keep", "", NOT_NON_NEGATIVE_INT),
    bad("train-keep-fraction", "train.py", "--keep", "1.5", NOT_NON_NEGATIVE_INT),
    bad("infer-count-word", "infer.py", "--count", "ten", NOT_POSITIVE_INT, shown_flag="--count/-c"),
    bad("pre-workers-word", "preprocess.py", "--workers", "x", NOT_POSITIVE_INT),
    bad("wn-batch-word", "train_wavenet.py", "-b", "x", NOT_POSITIVE_INT, shown_flag="--batchsize/-b"),
    bad("train-seed-word", "train.py", "--seed", "x", SEED.replace("{value}", "{value!r}")),
    bad("pre-levels-word", "preprocess.py", "--levels", "x", LEVELS.replace("{value}", "{value!r}")),
    bad("wn-val-fraction-word", "train_wavenet.py", "--val_fraction", "half", FRACTION.replace("{value}", "{value!r}")),
    bad("train-weight-decay-word", "train.py", "--weight_decay", "x", NON_NEGATIVE.replace("{value}", "{value!r}")),
    bad(
        "train-learning-rate-word",
        "train.py",
        "--learning_rate",
        "fast",
        "must be a positive finite number, got {value!r}",
    ),
    case(
        "temperature-word",
        "infer_wavenet.py",
        ["--temperature", "hot"],
        "error: --temperature 'hot': pass 0 or a positive finite number",
    ),
    # 8. a folder where a file is wanted, and the reverse
    case(
        "infer-output-is-folder",
        "infer.py",
        ["-o", "{tmp}"],
        "error: --output '{tmp}' is a folder; pass a file name such as '{tmp}/samples.png'",
    ),
    case(
        "train-out-is-file",
        "train.py",
        ["-o", "{file}"],
        "error: --out '{file}' is a file, not a folder; pick a folder",
    ),
    case(
        "wn-out-is-file",
        "train_wavenet.py",
        ["-o", "{file}"],
        "error: --out '{file}' is a file, not a folder; pick a folder",
    ),
    case(
        "winfer-output-is-file",
        "infer_wavenet.py",
        ["-o", "{file}"],
        "error: --output '{file}' is a file, not a folder; pick a folder",
    ),
    case(
        "pre-output-is-file",
        "preprocess.py",
        ["--output", "{file}"],
        "error: --output '{file}' is a file, not a folder; pick a folder",
    ),
]


@pytest.mark.parametrize("script,argv,fragment", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_value_is_one_line_error(world, script, argv, fragment, capsys, monkeypatch):
    status = run_main(script, [a.format(**world) for a in argv], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment.format(**world))


@pytest.mark.parametrize(
    "parse",
    [
        argtypes.positive_int,
        argtypes.non_negative_int,
        argtypes.positive_float,
        argtypes.non_negative_float,
        argtypes.fraction,
        argtypes.seed,
        argtypes.mu_law_levels,
    ],
    ids=lambda parse: parse.__name__,
)
def test_text_that_is_no_number_gets_the_flags_own_message(parse):
    # argparse turns a ValueError into "invalid <function name> value"; ArgumentTypeError's text is shown as is
    with pytest.raises(argparse.ArgumentTypeError) as bounds:
        parse("-1")  # below every one's bounds
    wanted = str(bounds.value).removesuffix(", got -1")
    for text in ("x", "", " ", "1.5x", "١٢x"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^{re.escape(wanted)}, got {re.escape(repr(text))}$"):
            parse(text)


def test_bounds_are_accepted():
    assert infer_wavenet.parse_args(["-m", "x", "--temperature", "0"]).temperature == 0.0  # greedy
    assert train_wavenet.parse_args(["--val_fraction", "0.5"]).val_fraction == 0.5
    for parse in (train.parse_args, train_wavenet.parse_args, infer.parse_args, infer_wavenet.parse_args):
        base = ["-m", "x"] if parse in (infer.parse_args, infer_wavenet.parse_args) else []
        assert parse(base + ["--seed", "0"]).seed == 0
        assert parse(base + ["--seed", "4294967295"]).seed == 2**32 - 1
    args = train.parse_args(["--gradclip", "0", "--weight_decay", "0"])
    assert (args.clip, args.weight_decay) == (0.0, 0.0)
    assert train.parse_args(["--clip", "2.5"]).clip == 2.5  # --clip is --gradclip's other name


@pytest.mark.parametrize(
    "argv,stats",
    [
        ([], False),
        (["--stats"], True),
        (["--stats", "1"], True),
        (["--stats", "0"], False),
        (["--stats", "TRUE"], True),
        (["--stats", "no"], False),
        (["--stats", "On"], True),
        (["--stats", "off"], False),
        (["--stats", "-o", "elsewhere"], True),
    ],
)  # alone, before another flag
def test_stats_alone_or_with_a_yes_no_word(argv, stats):
    for parse in (train.parse_args, train_wavenet.parse_args):
        settings = cli.settings_from_args(parse(argv))
        assert settings.stats is stats
    assert train.parse_args(["--stats", "-o", "elsewhere"]).out == "elsewhere"


def help_text(parse, capsys):
    with pytest.raises(SystemExit):
        parse(["-h"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal's width


def test_usage_names_each_clip_flag_after_itself(capsys):
    text = help_text(train.parse_args, capsys)
    assert "[--gradclip GRADCLIP]" in text and "--gradclip GRADCLIP, --clip GRADCLIP" in text
    assert "0: no clipping" in text and "[--stats [STATS]]" in text
    text = help_text(train_wavenet.parse_args, capsys)
    assert "[--clip CLIP]" in text and "0: no clipping" in text and "[--stats [STATS]]" in text


def test_the_flags_at_their_bounds_train(tmp_path):
    out = tmp_path / "run"
    train.main(
        TINY_RUN + ["-o", str(out), "--seed", "4294967295", "--stats", "yes", "--gradclip", "0", "--weight_decay", "0"]
    )
    log = read_log(out)
    assert log and all(math.isfinite(r["val_nll"]) and "stats" in r for r in log)


def test_infer_says_which_snapshot_a_folder_gave(world, tmp_path, capsys):
    newest = files.newest(world["pix"], "pixelcnn_")
    infer.main(["-m", world["pix"], "-c", "1", "-o", str(tmp_path / "a.png")])
    assert capsys.readouterr().out.splitlines()[0] == f"using {newest} (newest in {world['pix']}/)"
    infer.main(["-m", newest, "-c", "1", "-o", str(tmp_path / "b.png")])  # a file: nothing to say
    assert "using" not in capsys.readouterr().out


def test_infer_rows_take_the_labels_in_turn_as_its_help_says(world, tmp_path, monkeypatch, capsys):
    # world's Gated PixelCNN knows the 10 digits: a 12x12 grid's rows 10 and 11 start over at labels 0 and 1
    drawn = {}

    def sample(model, count, height, width, label=None, **_):
        drawn["label"] = label.cpu()
        return torch.zeros(count, model.in_channels, height, width, dtype=torch.long)

    monkeypatch.setattr(infer, "sample_images", sample)
    infer.main(["-m", world["pix"], "-c", "12", "-o", str(tmp_path / "grid.png")])
    rows = drawn["label"].view(12, 12)  # row r: the 12 images of grid row r
    assert rows.tolist() == [[r % 10] * 12 for r in range(12)]
    assert "row r of the grid gets label r modulo the number of classes" in help_text(infer.parse_args, capsys)


def test_infer_wavenet_says_which_snapshot_and_counts_in_words(world, tmp_path, capsys):
    # a model of one speaker (world's WaveNet has two): no speaker to name in what it wrote
    shutil.copytree(os.path.join(world["tones"], "p225"), tmp_path / "tones" / "p225")
    field = receptive_field(STACKS, LAYERS)
    preprocessing.preprocess(
        str(tmp_path / "tones"), str(tmp_path / "data"), RATE, field + TARGET, receptive_field=field
    )
    wn = str(tmp_path / "wn")
    train_wavenet.main(TINY_WAVENET + ["-b", "16", "-e", "1", "-d", str(tmp_path / "data"), "-o", wn])
    capsys.readouterr()
    newest = files.newest(wn, "wavenet_")
    infer_wavenet.main(["-m", wn, "-c", "1", "--length", "40", "--temperature", "0", "-o", str(tmp_path / "one")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"using {newest} (newest in {wn}/)"
    assert printed[-1].startswith("wrote 1 wav file of 40 samples (0.01 s at 8000 Hz) to "), printed
    infer_wavenet.main(["-m", newest, "-c", "2", "--length", "40", "-o", str(tmp_path / "two")])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("wrote 2 wav files of 40 samples"), printed


def test_infer_wavenet_names_samples_of_an_earlier_run(world, tmp_path, capsys):
    out = str(tmp_path / "out")
    infer_wavenet.main(["-m", world["wn"], "-c", "3", "--length", "40", "-o", out, "--plot"])
    infer_wavenet.main(["-m", world["wn"], "-c", "1", "--length", "40", "-o", out])
    note = capsys.readouterr().out.splitlines()[-1]
    assert note == f"note: {out}/ also holds 2 sample(s) of an earlier run (sample_1.wav, ...), left as they were"
    # the plot of the replaced sample_0.wav is gone; the earlier run's others stay
    assert sorted(os.listdir(out)) == ["sample_0.wav", "sample_1.png", "sample_1.wav", "sample_2.png", "sample_2.wav"]


def test_a_failed_run_leaves_no_empty_folder_behind(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "run"
    argv = SAFE["train.py"][:-2] + ["-o", str(out), "-r", str(tmp_path / "missing_snapshot")]
    assert run_main("train.py", argv, monkeypatch) == 2
    assert "snapshot" in capsys.readouterr().err and not (tmp_path / "new").exists()
    # a folder that was there before stays, and so does one the failed run wrote into
    (tmp_path / "kept").mkdir()
    assert run_main("train.py", argv[:-4] + ["-o", str(tmp_path / "kept"), "-r", "missing"], monkeypatch) == 2
    assert (tmp_path / "kept").is_dir()


def test_the_other_models_folder_names_the_right_script(world, tmp_path):
    with pytest.raises(
        UserError, match=r"holds WaveNet snapshots \(wavenet_\d+\), no pixelcnn_<N>; use infer_wavenet.py"
    ):
        infer.main(["-m", world["wn"], "-o", str(tmp_path / "x.png")])
    with pytest.raises(
        UserError, match=r"holds GatedPixelCNN snapshots \(pixelcnn_\d+\), no wavenet_<N>; use infer.py"
    ):
        infer_wavenet.main(["-m", world["pix"], "-o", str(tmp_path / "x")])


def test_resuming_without_the_architecture_flags_takes_them_from_the_snapshot(world, tmp_path):
    # as the infer scripts do; the --resume line a stopped run prints is then enough
    for script, run, more in ((train_wavenet, "wn", ["-d", world["data"]]), (train, "pix", ["--dataset", "digits"])):
        out = tmp_path / run
        shutil.copytree(world[run], out)
        script.main([*more, "-e", "2", "-o", str(out), "-r", str(out)])
        assert [r["epoch"] for r in read_log(out)] == [1, 2]


def test_resuming_with_a_contradicting_architecture_flag_says_which(world, tmp_path):
    with pytest.raises(UserError, match="--stacks_num 2 contradicts .*, which was trained with --stacks_num 1; drop"):
        train_wavenet.main(["-d", world["data"], "-s", "2", "-e", "2", "-o", world["wn"], "-r", world["wn"]])
