"""Entry point of the ``rsn2`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rsn2.errors import RSN2Error
from rsn2.network.task_inference import DEFAULT_THRESHOLD
from rsn2.version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsn2",
        description="Many unrelated tasks in one network, each in its own disjoint subnetwork (RSN2).",
    )
    parser.add_argument("--version", action="version", version=f"rsn2 {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for PyTorch (default: PyTorch's, or OMP_NUM_THREADS; the demo uses 1). Waiting threads "
        "sleep instead of spinning unless OMP_WAIT_POLICY=ACTIVE is set",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train digits + wine together, then diabetes, with dense controls (no download)",
        description="Three unrelated scikit-learn tasks in one network: digits (10 classes) and wine (3 classes) "
        "trained together, then diabetes regression as a later stage, each with a dense control. Prints per task "
        "the multitask and control test metric, the metric before and after the later stage, the kept fraction, "
        "and the model file size next to one dense model and the sum of the controls.",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of splits, initialisation and batch order (default 0)")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    demo.add_argument("--save", metavar="PATH", help="also write the trained multitask model to PATH (.safetensors)")
    demo.add_argument(
        "--progress", action="store_true", help="progress bars while training (default: one line per epoch on stderr)"
    )

    info = sub.add_parser(
        "info",
        help="show a model file's tasks, per-layer ownership and free capacity; verifies integrity",
        description="Load MODEL, re-verify shapes, ownership and checksums, and describe it. Exits with status 1 "
        "and the reason if the file fails verification.",
    )
    info.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    info.add_argument("--json", action="store_true", help="print one JSON object")

    train = sub.add_parser(
        "train",
        help="train your own tasks from a YAML file (CSV, .npy/.npz, image folders, JSON Lines) into one model",
        description="Read CONFIG (network, tasks with their files, stages; see docs/own-tasks.md), select and "
        "train every stage, write one model file to MODEL and print each task's test metric.",
    )
    train.add_argument("config", metavar="CONFIG", help="training YAML file")
    train.add_argument("--out", required=True, metavar="MODEL", help="model file to write (.safetensors)")
    train.add_argument("--controls", action="store_true", help="also train a dense control per task and print it")
    train.add_argument(
        "--data-dir", metavar="D", help="folder the file's data paths are relative to (default: its own)"
    )

    add = sub.add_parser(
        "add-task",
        help="train more tasks into a model's free capacity; writes a new model file",
        description="Read MODEL, select and train the tasks of CONFIG in its free capacity and write NEW_MODEL. "
        "MODEL is never modified; the earlier tasks' outputs are checked bit-identical before writing; too little "
        "free capacity is refused before training, naming the layer.",
    )
    add.add_argument("model", metavar="MODEL", help="the trained model file")
    add.add_argument("config", metavar="CONFIG", help="training YAML file with the new tasks (no network key)")
    add.add_argument("--out", required=True, metavar="NEW_MODEL", help="the new model file")
    add.add_argument("--data-dir", metavar="D", help="folder the file's data paths are relative to (default: its own)")
    _factory_option(add)

    predict = sub.add_parser(
        "predict",
        help="predict one task (named, or inferred per sample) on a CSV, .npy, image (or folder) or JSON Lines file",
        description="Run task T of MODEL on INPUT, preprocessed as the model file stores it (as serve and the "
        "ONNX export do): a CSV (the training feature columns, by name), a .npy array, an image file or a folder of "
        "images (directly in it or in one subfolder per class, as in training), or a JSON Lines file (the training "
        "text field). Writes CSV: per sample the class and each class's probability, or the predicted value in "
        "the training target's units. Without --task, each sample's task is inferred among the classification "
        "tasks that read INPUT (the one whose output is least uncertain, by normalized entropy): per sample the "
        "task, a confidence in [0, 1], the class and its probability; below --threshold the task is 'unknown'.",
    )
    predict.add_argument(
        "model",
        metavar="MODEL",
        help="an rsn2 model file (tasks of rsn2 train and add-task read raw files; others a .npy of input tensors)",
    )
    predict.add_argument("input", metavar="INPUT", help="the samples")
    _factory_option(predict)
    predict.add_argument("--task", metavar="T", help="the task to run (default: inferred per sample)")
    predict.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="C",
        help="without --task: answer 'unknown' below this confidence, in [0, 1] (default %(default)s)",
    )
    predict.add_argument("--out", metavar="FILE", help="write the CSV here (default: standard output)")

    export = sub.add_parser(
        "export",
        help="write one task of a model as a standalone ONNX model (its preprocessing and weights only), checked "
        "against rsn2",
        description="Export task T of MODEL to FILE as an ONNX model that takes raw input and answers as rsn2 "
        "predict does: input 'features' (raw feature values, scaled in the graph), 'pixels' (0-255 at the "
        "training size), 'token_ids' (the token rule is in the file's metadata) or 'input' (tasks without a stored "
        "preprocessing); outputs 'probabilities' and 'label', or 'value' in the training target's units; dynamic "
        "batch axis. Only the task's own weights are stored (as their nonzeros). Before reporting success the "
        "command runs the file in ONNX Runtime and compares its answers with rsn2's on seeded batches (within "
        "1e-5); on any difference nothing is written.",
    )
    export.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    export.add_argument("--task", required=True, metavar="T", help="the task to export")
    _factory_option(export)
    export.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default onnx)")
    _values_option(export, "store the task's weights")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write the exported model")

    serve = sub.add_parser(
        "serve",
        help="serve every task of a model over HTTP (Open Inference Protocol v2, one task = one model name)",
        description="Load MODEL and answer GET /v2/health/live, /v2/health/ready, /v2/models/{task} and POST "
        "/v2/models/{task}/infer for every task, from one process. Each task takes raw inputs and answers as "
        "rsn2 predict does (the model file's preprocessing; GET /v2/models/{task} names its inputs and outputs); "
        "JSON bodies or Triton's binary tensor data extension. Requests to one task are batched dynamically "
        "(up to --max-batch samples, waiting at most --max-wait-ms for more). Bad requests get a 4xx JSON error. "
        "The model name 'auto' (unless a task has that name) takes inputs without a task name: each classification "
        "task that reads them runs, and per sample the one whose output is least uncertain answers (outputs task, "
        "confidence, label, probability; task 'unknown' below --task-threshold).",
    )
    serve.add_argument("model", metavar="MODEL", help="path of an rsn2 .safetensors model file")
    _factory_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--max-batch", type=int, default=64, help="most samples per batch (default 64)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    serve.add_argument(
        "--max-body-mb", type=float, default=8.0, help="largest request body accepted, in MiB (default 8)"
    )
    serve.add_argument(
        "--dense-budget",
        type=_dense_budget,
        default=1.0,
        metavar="X",
        help="dense kernel copies all tasks may hold together, in multiples of one dense model's bytes; layers "
        "beyond it run the sparse kernels at every batch size ('none': no budget; default 1)",
    )
    serve.add_argument(
        "--compact-steps",
        action="store_true",
        help="hold each task's packed linear layers with 4-bit column steps: less memory (4.5 bytes per kept "
        "weight and one per longer step, instead of 5), slower sparse kernels (docs/performance.md, 'Serving memory')",
    )
    _values_option(serve, "hold every task's weights")
    serve.add_argument(
        "--task-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="C",
        help="the 'auto' model answers task 'unknown' below this confidence, in [0, 1] (default %(default)s)",
    )

    run = sub.add_parser(
        "run",
        help="run an experiment file: multitask model, dense controls, results, report, figures",
        description="Train the multitask model of CONFIG and every dense control for each seed, evaluate on the "
        "test sets and write DIR/results.json, DIR/report.md, DIR/figures/ and DIR/model.safetensors. Finished "
        "seeds are kept in DIR/seeds/, the seed in progress in DIR/checkpoints/ (finished stages and controls, "
        "and the stage in training after every epoch); rerunning with the same DIR resumes.",
    )
    run.add_argument("config", metavar="CONFIG", help="experiment YAML file (see experiments/)")
    run.add_argument("--out", required=True, metavar="DIR", help="output folder")
    run.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1; default 1)")
    _data_dir_option(run)
    run.add_argument("--smoke", action="store_true", help="tiny subsets and one epoch: checks the pipeline in seconds")
    run.add_argument(
        "--device",
        default="auto",
        help="where to train: auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default auto)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars and per-epoch lines while training (default: bars on a terminal, else the lines "
        "only; --no-progress: nothing)",
    )

    summary = sub.add_parser(
        "summary",
        help="put every experiment's results side by side with the paper (writes DIR/README.md)",
        description="Read DIR/<name>/results.json for every experiment file and write DIR/README.md: one row per "
        "task, ours beside the paper's, with the target status; experiments without results are listed as not run.",
    )
    summary.add_argument("results_dir", metavar="DIR", help="folder holding one results folder per experiment")
    summary.add_argument(
        "--configs",
        default="experiments",
        metavar="FOLDER",
        help="folder of experiment files, and of variants one folder down (default: experiments)",
    )

    cl = sub.add_parser(
        "cl",
        help="continual-learning benchmarks: rsn2 beside PackNet, EWC, fine-tuning, joint and STL",
        description="Run a benchmark file (benchmarks/cl/*.yaml: a task stream, a network, training settings and "
        "methods), each task in its own stage with its own head, or summarise the results of several.",
    )
    cl_sub = cl.add_subparsers(dest="cl_command", required=True, metavar="ACTION")
    cl_run = cl_sub.add_parser(
        "run",
        help="train every method of FILE for each seed; write R, metrics and a figure",
        description="Train each method of FILE (or --methods) for seeds 0..N-1 and write "
        "DIR/runs/<method>-seed<k>.json (R, final accuracies, stage seconds), DIR/results.json (ACC, BWT, "
        "forgetting, LA: mean, std, values) and DIR/accuracy.png. Runs already in DIR with the same settings are "
        "reused; runs of other settings are refused.",
    )
    cl_run.add_argument("config", metavar="FILE", help="benchmark YAML file (see benchmarks/cl/)")
    cl_run.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cl_run.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1; default 3)")
    cl_run.add_argument("--methods", metavar="M,M", help="comma-separated subset of the file's methods")
    _data_dir_option(cl_run)
    cl_run.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    cl_capacity = cl_sub.add_parser(
        "capacity",
        help="how many tasks fit: rsn2 on FILE's permuted stream at several keep fractions until one is refused",
        description="For each keep fraction, train rsn2 on FILE's permuted stream (made --max-tasks long), one task "
        "per stage, until a task no longer fits (refused with a capacity error before anything changes). Writes "
        "DIR/f<fraction>.json (reused when rerun with the same settings), DIR/stl-reference.json (one dense model "
        "per task on the first tasks), DIR/results.json and DIR/capacity.png.",
    )
    cl_capacity.add_argument("config", metavar="FILE", help="benchmark YAML file with a permuted stream")
    cl_capacity.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cl_capacity.add_argument(
        "--fractions", default="0.01,0.02,0.05,0.1,0.2,0.5", metavar="F,F", help="keep fractions (default 1%%..50%%)"
    )
    cl_capacity.add_argument("--max-tasks", type=int, default=50, help="longest stream (default 50)")
    cl_capacity.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    _data_dir_option(cl_capacity)
    cl_capacity.add_argument("--smoke", action="store_true", help="256 training / 128 test samples per task")
    cl_summary = cl_sub.add_parser(
        "summary",
        help="DIR/results.json and DIR/README.md from every DIR/<benchmark>/results.json",
        description="Collect the results of every full benchmark run in DIR/<name>/ and write DIR/results.json "
        "({benchmark: {method: {ACC, BWT, forgetting, LA, seeds}}}) and DIR/README.md (tables beside the published "
        "figures, with rsn2's targets).",
    )
    cl_summary.add_argument("results_dir", metavar="DIR", help="folder holding one results folder per benchmark")

    data = sub.add_parser(
        "data",
        help="list, download and verify the paper's datasets",
        description="The datasets live in DATA_DIR/<name>/: --data-dir, else $RSN2_DATA, else ~/.cache/rsn2/data.",
    )
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_list = data_sub.add_parser("list", help="each dataset: found or missing, where, verified or not")
    data_list.add_argument("--no-verify", action="store_true", help="skip checksum verification (faster)")
    data_list.add_argument("--json", action="store_true", help="print JSON")
    data_dl = data_sub.add_parser("download", help="fetch datasets from their canonical sources (SHA-256 checked)")
    data_dl.add_argument("names", nargs="+", metavar="NAME", help="dataset name(s), or 'all'")
    data_dl.add_argument("--mirror", metavar="URL", help="fetch <URL>/<name>/<file> instead (or $RSN2_MIRROR)")
    data_dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    data_verify = data_sub.add_parser("verify", help="re-check the checksums of the datasets present")
    data_verify.add_argument("names", nargs="*", metavar="NAME", help="datasets to check (default: all present)")
    for p in (data_list, data_dl, data_verify):
        _data_dir_option(p)
    return parser


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, as every command that reads the standard datasets takes it."""
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default: $RSN2_DATA or ~/.cache/rsn2/data)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print(f"rsn2: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    elif args.command == "demo":  # small models: one thread is fastest, and leaves the other cores alone
        import torch

        torch.set_num_threads(1)
    try:
        if args.command == "demo":
            from rsn2.experiments.demo import format_report, run_demo

            report = run_demo(seed=args.seed, save=args.save, progress=True if args.progress else "lines")
            print(json.dumps(report, indent=2) if args.json else format_report(report))
        elif args.command == "info":
            from rsn2.cli.info import format_info, model_info

            info = model_info(args.model)
            print(json.dumps(info, indent=2) if args.json else format_info(info))
        elif args.command in ("train", "add-task"):
            from rsn2.workflow import add_task_file, load_train_file, train_file

            cfg = load_train_file(args.config, args.data_dir, network_allowed=args.command == "train")
            if args.command == "train":
                done = train_file(cfg, args.out, controls=args.controls)
            else:
                done = add_task_file(args.model, cfg, args.out, body=_body(args))
            print(f"wrote {done['model']} ({done['bytes']:,} bytes)")
            if done.get("unchanged"):
                print(
                    f"earlier task(s) {', '.join(done['unchanged'])}: outputs bit-identical to {args.model}'s "
                    "on seeded inputs (checked before writing)"
                )
            for name, row in done["tasks"].items():
                control = f", dense control {row['control']:.4f}" if "control" in row else ""
                print(f"{name:<16} {row['kind']:<14} test {row['metric']} {row['multitask']:.4f}{control}")
        elif args.command == "predict":
            from rsn2.workflow import predict_file

            text = predict_file(args.model, args.task, args.input, body=_body(args), threshold=args.threshold)
            if args.out:
                from rsn2.io import atomic_write_bytes

                atomic_write_bytes(args.out, text.encode())
                rows = text.count("\n") - 1
                which = f"task {args.task!r}" if args.task else "tasks inferred per sample"
                print(f"wrote {args.out}: {rows} prediction(s) of {which}")
            else:
                sys.stdout.write(text)
        elif args.command == "export":
            from rsn2.deploy import export_onnx
            from rsn2.io import load_model, read_metadata
            from rsn2.preprocessing import preprocessing_of

            network = load_model(args.model, body=_body(args))
            pre = preprocessing_of(network.task_spec(args.task), read_metadata(args.model))
            exported = export_onnx(network, args.task, args.out, preprocessing=pre, values=args.values)
            print(
                f"wrote {exported.path} ({exported.bytes:,} bytes): task {args.task!r} as ONNX with its "
                f"preprocessing; ONNX Runtime matches rsn2 on batches of {' and '.join(map(str, exported.batches))} "
                f"(largest difference {exported.max_abs_diff:.2g})"
            )
        elif args.command == "serve":
            from rsn2.deploy.server import ServeSettings, serve

            body = int(args.max_body_mb * 1024 * 1024)
            settings = ServeSettings(
                args.max_batch,
                args.max_wait_ms,
                body,
                args.dense_budget,
                args.compact_steps,
                args.task_threshold,
                args.values,
            )
            # no name here holds the network: serve lets it go once the task models are copied out
            serve(**_served_model(args.model, _body(args)), host=args.host, port=args.port, settings=settings)
        elif args.command == "data":
            return _data(args)
        elif args.command == "run":
            return _run(args, argv)
        elif args.command == "summary":
            return _summary(args)
        elif args.command == "cl":
            return _cl(args)
    except RSN2Error as exc:
        print(f"rsn2 {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _values_option(parser: argparse.ArgumentParser, what: str) -> None:
    from rsn2.inference.values import VALUE_DTYPES

    parser.add_argument(
        "--values",
        default="float32",
        choices=VALUE_DTYPES,
        help=f"{what} as float32 or rounded to bfloat16 (half the bytes per value, sums still in float32; "
        "the accuracy change per experiment: docs/performance.md, 'Reduced precision'; default %(default)s)",
    )


def _factory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--factory",
        metavar="MODULE:CALLABLE",
        help="for a model made from your own nn.Module by rsn2.multitask: the function that builds a fresh "
        "instance of it (package.module:callable, imported from the current folder first); the model file "
        "never names code to import",
    )


def _body(args: argparse.Namespace) -> Any:
    """The fresh user module ``--factory`` builds, or None."""
    if args.factory is None:
        return None
    from rsn2.network.factory import module_from_factory

    return module_from_factory(args.factory)


def _served_model(path: str, body: Any = None) -> dict[str, Any]:
    """``network`` and each task's stored ``preprocessing`` of a model file, as :func:`serve` takes them."""
    from rsn2.io import load_model, read_metadata
    from rsn2.preprocessing import preprocessing_of

    network, meta = load_model(path, body=body), read_metadata(path)
    return {
        "network": network,
        "preprocessing": {t: preprocessing_of(network.task_spec(t), meta) for t in network.task_names},
    }


def _dense_budget(text: str) -> float | None:
    """``--dense-budget``: a number >= 0, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}")
    return value


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    import shlex
    from pathlib import Path

    from rsn2.devices import resolve_device
    from rsn2.experiments import load_config
    from rsn2.experiments.report import target_status
    from rsn2.experiments.runner import run_experiment
    from rsn2.training import distributed

    if args.seeds < 1:
        print("rsn2 run: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    config = load_config(args.config)
    command = "rsn2 " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    ranks = distributed.init_from_env(resolve_device(args.device))  # under torchrun: join its process group
    if ranks is not None:
        command = f"torchrun --nproc_per_node {ranks.world_size} -m {command}"
    writer = distributed.is_writer()
    try:
        results = run_experiment(
            config,
            Path(args.out),
            seeds=args.seeds,
            data_dir=args.data_dir,
            smoke=args.smoke,
            device=args.device,
            progress=(True if sys.stderr.isatty() else "lines") if args.progress is None else args.progress,
            command=command,
        )
    except KeyboardInterrupt:
        print(
            f"rsn2 run: interrupted; finished seeds are kept in {args.out}/seeds and the seed in progress in "
            f"{args.out}/checkpoints (rerun the same command to resume after the last finished epoch)",
            file=sys.stderr,
        )
        return 130
    finally:
        distributed.shutdown()
    if not writer:  # rank 0 prints the results
        return 0
    for name, row in results["tasks"].items():
        print(
            f"{name:<10} {row['metric']:<9} multitask {row['multitask']['mean']:.4f}  "
            f"control {row['control']['mean']:.4f}  {target_status(row)}"
        )
    print(f"wrote {args.out}/results.json, report.md, figures/")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rsn2.experiments.summary import write_summary

    folder = Path(args.configs)  # the experiments, then variants in subfolders (ablations/)
    configs = sorted(folder.glob("*.yaml")) + sorted(p for p in folder.glob("*/*.yaml"))
    if not configs:
        print(f"rsn2 summary: error: no experiment files (*.yaml) in {args.configs}", file=sys.stderr)
        return 2
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        print(f"rsn2 summary: error: {results_dir} is not a folder", file=sys.stderr)
        return 2
    print(f"wrote {write_summary(configs, results_dir)}")
    return 0


def _cl(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rsn2.continual import load_benchmark_config, run_benchmark
    from rsn2.continual.summary import write_summary

    if args.cl_command == "summary":
        for path in write_summary(Path(args.results_dir)):
            print(f"wrote {path}")
        return 0
    if args.cl_command == "capacity":
        from rsn2.continual.capacity import capacity_sweep

        try:
            fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
        except ValueError:
            print(f"rsn2 cl capacity: error: --fractions must be numbers, got {args.fractions!r}", file=sys.stderr)
            return 2
        sweep = capacity_sweep(
            load_benchmark_config(args.config),
            args.out,
            fractions=fractions,
            max_tasks=args.max_tasks,
            seed=args.seed,
            data_dir=args.data_dir,
            smoke=args.smoke,
        )
        for f, row in sweep["fractions"].items():
            print(
                f"keep {float(f):6.1%}: {row['tasks']:3d} tasks, ACC {row['ACC']:.2f}, first below STL-1: "
                f"{row['first_below_stl']}"
            )
        print(f"wrote {args.out}/results.json, capacity.png")
        return 0
    if args.seeds < 1:
        print("rsn2 cl run: error: --seeds must be >= 1", file=sys.stderr)
        return 2
    config = load_benchmark_config(args.config)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    results = run_benchmark(
        config, args.out, methods=methods, seeds=args.seeds, data_dir=args.data_dir, smoke=args.smoke
    )
    for method, entry in results["methods"].items():
        bwt = entry["BWT"]["mean"]
        bwt_text = f"{bwt:+.2f}" if bwt is not None else "-"
        print(f"{method:<9} ACC {entry['ACC']['mean']:6.2f} ± {entry['ACC']['std']:.2f}  BWT {bwt_text}")
    print(f"wrote {args.out}/results.json, accuracy.png, runs/")
    return 0


def _data(args: argparse.Namespace) -> int:
    from rsn2.cli.data_command import dataset_status, download, format_status
    from rsn2.data.location import locate

    if args.data_command == "list":
        rows = dataset_status(args.data_dir, verify=not args.no_verify)
        print(json.dumps(rows, indent=2) if args.json else format_status(rows))
        return 0
    if args.data_command == "download":
        for path in download(args.names, args.data_dir, args.mirror, progress=not args.no_progress):
            print(f"ok  {path}")
        return 0
    names = args.names or [r["name"] for r in dataset_status(args.data_dir, verify=False) if r["status"] == "found"]
    if not names:
        print("rsn2 data verify: no datasets found", file=sys.stderr)
        return 1
    failed = 0
    for name in names:
        try:
            found = locate(name, args.data_dir, verify=True)
            print(f"ok      {name} ({found.layout.name}) in {found.folder}")
        except RSN2Error as exc:
            failed += 1
            print(f"FAILED  {name}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
