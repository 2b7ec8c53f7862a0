"""``rnnkit translate chat`` and its old name ``rnnkit chat``: answers piped input line by line,
skips empty lines, exits 0 on EOF."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rnnkit.cli.main import main


def test_chat_answers_piped_input_and_exits_on_eof(tmp_path, capsys, monkeypatch):
    pairs = ["hello\thi there", "how are you\ti am fine", "bye\tsee you"] * 16
    (tmp_path / "dialog.tsv").write_text("\n".join(pairs) + "\n")
    assert main(["translate", "train", "--train", str(tmp_path / "dialog.tsv"), "--out",
                 str(tmp_path / "run"), "--tokenizer", "word", "--embedding-size", "16",
                 "--hidden-size", "32", "--dropout", "0", "--lr", "0.02", "--max-epochs",
                 "12", "--batch-size", "16", "--eval-every", "0", "--eval-bleu", "0",
                 "--no-progress", "--no-tensorboard", "--no-plot"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rnnkit", "chat", "--checkpoint", str(tmp_path / "run"),
         "--beam-size", "2"],
        input="hello\n\nbye\n", capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hi there", "see you"]
    assert done.stderr == ""
    monkeypatch.setattr("sys.stdin", io.StringIO("how are you\n"))
    capsys.readouterr()
    assert main(["translate", "chat", "--checkpoint", str(tmp_path / "run"), "--device", "cpu",
                 "--prompt", "you: "]) == 0
    assert capsys.readouterr().out == "you: i am fine\nyou: \n"
