"""Command line: ``python -m tensorboard_plugin_attention`` (also the ``tensorboard-attention`` script).

  demo       fine-tune the demo model(s) on the CPU, logging loss and attention; print the tensorboard command
  backfill   log the attention of probe texts for saved checkpoints (checkpoint-<step> folders)
  export     write logged attention as one self-contained HTML page (opens from file://, no server)
  project    write the queries and keys of chosen heads for TensorBoard's Projector tab

Importing this module imports neither torch nor transformers; the subcommands do, when they run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from typing import Optional, Sequence


def _tensorboard_command(logdir: str, port: Optional[int] = None) -> list[str]:
    """The tensorboard executable of this Python environment (found even if the venv is not activated)."""
    exe = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if not os.path.isfile(exe):
        exe = shutil.which("tensorboard") or "tensorboard"
    else:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel if os.sep in rel else os.path.join(".", rel)
    cmd = [exe, "--logdir", logdir]
    if port is not None:
        cmd += ["--port", str(port)]
    return cmd


def _cmd_demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo's model ships in a pip package: no downloads
    from .demo import RUNS, run_demo

    runs = args.runs or list(RUNS)
    print(f"tensorboard-plugin-attention demo: {', '.join(runs)} -> {args.logdir}"
          f"{' (quick)' if args.quick else ''}", flush=True)
    summaries = run_demo(args.logdir, runs=runs, quick=args.quick, seed=args.seed)
    print()
    for s in summaries:
        acc = s.get("eval_accuracy")
        print(f"  {s['run']}: attention of {len(s['probes'])} probes ({', '.join(s['probes'])}) at "
              f"{len(s['steps'])} steps ({', '.join(map(str, s['steps']))})")
        extra = f"eval accuracy {acc:.3f}, " if isinstance(acc, float) else ""
        print(f"    {extra}{s['seconds']:.0f} s, written to {s['run_dir']}")
        for name, (label, p) in (s.get("predictions") or {}).items():
            print(f"    probe {name!r}: {label} (p={p:.2f})")
        for note in s.get("notes", []):
            print(f"    {note}")
    cmd = _tensorboard_command(args.logdir, args.port if args.port != 6006 else None)
    if not args.serve:
        print("\nView it:\n\n    " + " ".join(shlex.quote(c) for c in cmd) +
              "\n\nthen open http://localhost:%d and the Attention tab." % args.port)
        return 0
    print(f"\nServing: {' '.join(shlex.quote(c) for c in cmd)}  (Ctrl-C stops it)", flush=True)
    serve = [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--port", str(args.port)]
    if args.bind_all:
        serve.append("--bind_all")
    proc = subprocess.Popen(serve)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop TensorBoard with us
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cmd_backfill(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .integrations.backfill import backfill

    done = backfill(
        args.checkpoints, args.texts, args.logdir, tokenizer=args.tokenizer, steps=args.step, tag=args.tag,
        max_length=args.max_length, batch_size=args.batch_size, model_name=args.model_name,
        model_class=args.model_class, queries_keys=not args.no_queries_keys, device=args.device,
        progress=not args.no_progress,
    )
    print(f"logged {len(done)} checkpoint(s) at steps {', '.join(str(s) for _, s in done)} into {args.logdir}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .notebook import export_page

    page = export_page(args.logdir, logdir_spec=args.logdir_spec, run=args.run, tag=args.tag, example=args.example,
                       step=args.step, all_steps=args.all_steps, view=args.view, display_mode=args.display_mode)
    page.save(args.output)
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.2f} MB): open it in a browser, no server needed")
    return 0


def _head(value: str) -> tuple:
    """``LAYER.HEAD`` (or ``LAYER,HEAD``) -> (layer, head)."""
    parts = value.replace(",", ".").split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"a head is LAYER.HEAD, e.g. 1.3; got {value!r}")
    return int(parts[0]), int(parts[1])


def _cmd_project(args: argparse.Namespace) -> int:
    from .projector import export_projector

    path = export_projector(args.logdir, run=args.run, tag=args.tag, heads=args.head, step=args.step,
                            examples=args.example, kind=args.kind, out_dir=args.out, normalize=not args.raw)
    print(f"wrote {path} ({len(args.head)} head(s)): run tensorboard --logdir {shlex.quote(args.logdir)} "
          "and open the Projector tab" + ("" if args.out is None else " (on a logdir holding that directory)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorboard-attention",
                                description="Log attention for TensorBoard's Attention tab.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="fine-tune the demo model(s) on the CPU, logging loss and attention",
                       description="Fine-tunes all-MiniLM-L6-v2 on a built-in paraphrase task on the CPU (a few "
                       "minutes), logging loss, accuracy and attention + q/k of fixed probes into LOGDIR/<run>, "
                       "then prints the tensorboard command (or serves it with --serve).")
    d.add_argument("--logdir", default="runs/demo", help="where the demo runs go (default: runs/demo)")
    d.add_argument("--runs", nargs="+", metavar="RUN", help="which demo runs (default: all)")
    d.add_argument("--quick", action="store_true", help="a few steps only (for tests)")
    d.add_argument("--serve", action="store_true", help="start TensorBoard on LOGDIR afterwards")
    d.add_argument("--port", type=int, default=6006, help="TensorBoard's port (default 6006)")
    d.add_argument("--bind_all", action="store_true", help="with --serve: listen on all interfaces")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("backfill", help="log attention of probe texts for saved checkpoints",
                       description="Loads each checkpoint directory (save_pretrained layout, e.g. the Trainer's "
                       "checkpoint-<step> folders), runs the probe texts through it and logs their attention at "
                       "the checkpoint's step (from --step, trainer_state.json or the folder name).")
    b.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT_DIR")
    b.add_argument("--texts", required=True, metavar="FILE",
                   help="probe texts, one per line; a tab separates the two sentences of a pair")
    b.add_argument("--logdir", required=True, help="run directory to write to (e.g. the training run's)")
    b.add_argument("--tokenizer", metavar="PATH", help="tokenizer (default: the first checkpoint holding one)")
    b.add_argument("--step", type=int, action="append", metavar="N",
                   help="the step of each checkpoint, in order (repeat once per directory)")
    b.add_argument("--tag", default="probes", help="tag of the probes (default: probes)")
    b.add_argument("--max-length", type=int, default=128, help="truncate probes to this many tokens")
    b.add_argument("--batch-size", type=int, default=16, help="probes per forward pass")
    b.add_argument("--model-class", default="auto",
                   help="transformers class to load with, e.g. AutoModelForCausalLM (default: the architecture "
                   "in the checkpoint's config.json, else AutoModel)")
    b.add_argument("--model-name", help="model name shown in the tab (default: from the checkpoints' path)")
    b.add_argument("--no-queries-keys", action="store_true", help="log attention only, no queries/keys")
    b.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_backfill)

    e = sub.add_parser("export", help="write logged attention as one self-contained HTML page",
                       description="Writes the records of a logdir (by default one step: --step, else the latest; "
                       "--all-steps for every step, so the step slider, comparisons and heads over training work) as "
                       "one HTML file with the tab's views inlined: it opens from file:// with no network and no "
                       "TensorBoard, for sharing one record.")
    where = e.add_mutually_exclusive_group(required=True)
    where.add_argument("--logdir", help="TensorBoard logdir (a run directory or a directory of runs)")
    where.add_argument("--logdir_spec", help="as TensorBoard's --logdir_spec (name:path,name:path)")
    e.add_argument("--run", help="run (default: every run holding the tag)")
    e.add_argument("--tag", help="attention tag (default: every tag)")
    e.add_argument("--example", help="example (default: every example of the tag)")
    e.add_argument("--step", type=int, help="the step shown (default: the latest)")
    e.add_argument("--all-steps", action="store_true", help="embed every step, not only the one shown")
    e.add_argument("--view", default="head", help="view opened first: head, model, neuron, ... (default: head)")
    e.add_argument("--display-mode", choices=("dark", "light"), help="theme (default: the reader's system theme)")
    e.add_argument("-o", "--output", required=True, metavar="FILE.html", help="file to write")
    e.set_defaults(func=_cmd_export)

    pr = sub.add_parser("project", help="write the queries and keys of chosen heads for TensorBoard's Projector",
                        description="Writes, per chosen head, the queries and keys of the chosen examples at one "
                        "step (one point per token, metadata: token, position, example, q or k, step) with a "
                        "projector_config.pbtxt into the run's projector assets, so TensorBoard's own Projector "
                        "tab shows them (AttentionViz's joint query/key embedding).")
    pr.add_argument("logdir", help="TensorBoard logdir holding the attention run")
    pr.add_argument("--run", default=".", help="run (default: the logdir itself, '.')")
    pr.add_argument("--tag", required=True, help="attention tag")
    pr.add_argument("--head", type=_head, action="append", required=True, metavar="LAYER.HEAD",
                    help="a head to export, e.g. 1.3 (repeat for more)")
    pr.add_argument("--example", action="append", metavar="NAME", help="an example (repeat; default: all)")
    pr.add_argument("--step", type=int, help="the step (default: the latest with q/k for every example)")
    pr.add_argument("--kind", choices=("encoder", "decoder", "cross"), help="attention kind (default: the first with q/k)")
    pr.add_argument("--out", metavar="DIR", help="write here instead of <run>/plugins/org_tensorflow_tensorboard_projector")
    pr.add_argument("--raw", action="store_true", help="the vectors as logged (default: AttentionViz's "
                    "attention-preserving translation and scaling of keys against queries)")
    pr.set_defaults(func=_cmd_project)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input: say what to fix, no traceback
        print(f"tensorboard-attention {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
