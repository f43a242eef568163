"""Speed and memory of StefaLand against NH's cudalstm and transformer, measured side by side in one process.

    python benchmarks/speed.py            # full run: writes benchmarks/results/speed.json (speed_cuda.json on CUDA)
    python benchmarks/speed.py --quick    # reduced sizes, under a minute on a 2-core CPU: a check, not a result

Every figure is the median of several timed calls after warm-up (see ``timing.Repetitions`` and PROFILES below);
benchmarks/README.md describes the method and the committed results.
"""
import argparse
from importlib import metadata
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import nh_stefaland

from evaluation_cost import EvaluationSetup, compare_testers
from timing import Repetitions, measure
from workloads import LoopTokens, Shape, build, frozen_encoder_floor

RESULTS = Path(__file__).resolve().parent / 'results'
PAPER_MODEL = {'stefaland_d_model': 256, 'stefaland_nheads': 4, 'stefaland_dim_feedforward': 512,
               'stefaland_nlayers': 4, 'hidden_size': 256}
PROFILES = {
    'full': {'shape': Shape(batch=256, seq_length=365, n_dynamic=5, n_static=48), 'scaling_batch': 16,
             'lengths': (180, 365, 730), 'variables': (5, 10, 20),
             'evaluation': EvaluationSetup(model=PAPER_MODEL, seq_length=365, train_basins=2, test_basins=2,
                                           test_start='1989-10-01', test_end='1992-09-30', batch=256,
                                           train_batch=32, updates=8)},
    'quick': {'shape': Shape(batch=4, seq_length=60, n_dynamic=5, n_static=48), 'scaling_batch': 2,
              'lengths': (30, 60), 'variables': (5, 10),
              'evaluation': EvaluationSetup(model={'stefaland_d_model': 32, 'stefaland_nheads': 2,
                                                   'stefaland_dim_feedforward': 64, 'stefaland_nlayers': 1,
                                                   'hidden_size': 32},
                                            seq_length=60, train_basins=2, test_basins=1,
                                            test_start='1989-10-01', test_end='1990-09-30', batch=256,
                                            train_batch=16, updates=1)},
}
REPETITIONS = {
    ('full', 'cpu'): Repetitions(warmup=1, budget_s=25.0, minimum=2, maximum=7),
    ('full', 'cuda'): Repetitions(warmup=3, budget_s=5.0, minimum=10, maximum=50),
    ('quick', 'cpu'): Repetitions(warmup=1, budget_s=1.0, minimum=2, maximum=3),
    ('quick', 'cuda'): Repetitions(warmup=2, budget_s=1.0, minimum=3, maximum=10),
}
TARGETS = {'tokenizer_speedup_vs_loop': ('>=', 3.0), 'finetune_step_ratio_vs_cudalstm': ('<=', 2.5),
           'finetune_step_over_floor': ('<=', 1.2), 'evaluation_speedup_vs_nh_tester': ('>=', 50.0)}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the table and write the JSON file; returns what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help="reduced sizes: a check that everything runs")
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help="CPU threads for torch (default: torch's, one per core)")
    parser.add_argument('--output', type=Path, help="JSON file (default: benchmarks/results/speed[_cuda].json; "
                                                    "with --quick, nh_stefaland_speed_quick.json in the temp folder)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    nh_stefaland.register()
    profile = 'quick' if args.quick else 'full'
    device = torch.device(args.device)
    settings, repetitions = PROFILES[profile], REPETITIONS[(profile, device.type)]
    started = time.perf_counter()
    report = {'machine': _machine(device), 'profile': profile,
              'settings': {'shape': vars(settings['shape']), 'scaling_batch': settings['scaling_batch'],
                           'repetitions': vars(repetitions), 'evaluation': vars(settings['evaluation'])}}
    report['tokenizer'] = _tokenizer(settings['shape'], device, repetitions)
    report['models'], report['floor'] = _models(settings['shape'], device, repetitions)
    report['scaling'] = _scaling(settings, device, repetitions)
    report['evaluation'] = compare_testers(settings['evaluation'], device=str(device))
    report['keys'] = _keys(report)
    report['targets'] = {key: {'target': f'{op} {bound:g}', 'met': _met(report['keys'][key], op, bound)}
                         for key, (op, bound) in TARGETS.items()}
    report['wall_s'] = time.perf_counter() - started
    report['machine']['load_average_at_end'] = _load_average()
    if args.output:
        output = args.output
    elif args.quick:
        output = Path(tempfile.gettempdir()) / 'nh_stefaland_speed_quick.json'
    else:
        output = RESULTS / ('speed_cuda.json' if device.type == 'cuda' else 'speed.json')
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(format_table(report))
    print(f"\nwritten to {output} ({report['wall_s']:.0f} s)")
    return report


def _tokenizer(shape: Shape, device: torch.device, repetitions: Repetitions) -> dict:
    """Forward + backward (from a fixed upstream gradient, as the encoder would pass) of our tokenizer and of the
    reference loop, with identical weights and inputs; 10 % of the values hidden."""
    workload = build('stefaland_supervised', shape, device)
    ours = workload.model.tokens
    loop = LoopTokens(ours).to(device)
    generator = torch.Generator().manual_seed(2)
    dynamic = torch.randn(shape.batch, shape.seq_length, shape.n_dynamic, generator=generator).to(device)
    static = torch.randn(shape.batch, shape.n_static, generator=generator).to(device)
    dynamic_mask = (torch.rand(dynamic.shape, generator=generator) < 0.1).to(device)
    static_mask = (torch.rand(static.shape, generator=generator) < 0.1).to(device)
    upstream = torch.randn(shape.batch, shape.seq_length + 1, ours.positions.shape[1], generator=generator).to(device)
    with torch.no_grad():
        difference = (ours.eval()(dynamic, dynamic_mask, static, static_mask)
                      - loop.eval()(dynamic, dynamic_mask, static, static_mask)).abs().max().item()
    del workload
    results = {}
    for name, tokens in (('ours', ours.train()), ('loop', loop.train())):
        results[name] = measure(lambda: tokens(dynamic, dynamic_mask, static, static_mask).backward(upstream),
                                device, repetitions).as_dict()
        _progress(f"tokenizer {name}", results[name])
    results['max_abs_difference_eval'] = difference
    return results


def _models(shape: Shape, device: torch.device, repetitions: Repetitions) -> tuple[dict, dict]:
    """Training step and inference per sample of each model; the finetuning floor."""
    models, floor = {}, {}
    for name in ('cudalstm', 'transformer', 'stefaland_supervised', 'stefaland_finetune', 'stefaland_pretrain'):
        workload = build(name, shape, device)
        entry = {'parameters': sum(p.numel() for p in workload.model.parameters()),
                 'trainable_parameters': sum(p.numel() for p in workload.model.parameters() if p.requires_grad),
                 'train': measure(workload.training_step(), device, repetitions).as_dict(per=shape.batch)}
        _progress(f"{name} training step", entry['train'], 'ms/sample')
        if name in ('cudalstm', 'transformer', 'stefaland_supervised'):
            entry['inference'] = measure(workload.inference(), device, repetitions).as_dict(per=shape.batch)
            _progress(f"{name} inference", entry['inference'], 'ms/sample')
        if name == 'stefaland_finetune':
            encode, decoder_step = frozen_encoder_floor(workload)
            floor['frozen_encoder_inference'] = measure(encode, device, repetitions).as_dict(per=shape.batch)
            floor['decoder_training_step'] = measure(decoder_step, device, repetitions).as_dict(per=shape.batch)
            _progress("frozen encoder inference", floor['frozen_encoder_inference'], 'ms/sample')
            _progress("finetuning step without encoder", floor['decoder_training_step'], 'ms/sample')
        models[name] = entry
        del workload
    return models, floor


def _scaling(settings: dict, device: torch.device, repetitions: Repetitions) -> dict:
    """Training step per sample of StefaLand and cudalstm over window lengths T and numbers of inputs F."""
    base = settings['shape']
    shapes = [Shape(settings['scaling_batch'], length, base.n_dynamic, base.n_static) for length in settings['lengths']]
    shapes += [Shape(settings['scaling_batch'], base.seq_length, n, base.n_static) for n in settings['variables']
               if n != base.n_dynamic]
    rows = []
    for shape in shapes:
        row = {'T': shape.seq_length, 'F': shape.n_dynamic, 'batch': shape.batch}
        for name in ('stefaland_supervised', 'cudalstm'):
            row[name] = measure(build(name, shape, device).training_step(), device, repetitions).as_dict(shape.batch)
        row['ratio'] = row['stefaland_supervised']['ms'] / row['cudalstm']['ms']
        _progress(f"scaling T={shape.seq_length} F={shape.n_dynamic}", row['stefaland_supervised'], 'ms/sample')
        rows.append(row)
    return {'training_step_ms_per_sample': rows}


def _keys(report: dict) -> dict:
    models, floor = report['models'], report['floor']
    lstm = models['cudalstm']
    return {'tokenizer_speedup_vs_loop': report['tokenizer']['loop']['ms'] / report['tokenizer']['ours']['ms'],
            'finetune_step_ratio_vs_cudalstm': models['stefaland_finetune']['train']['ms'] / lstm['train']['ms'],
            'supervised_step_ratio_vs_cudalstm': models['stefaland_supervised']['train']['ms'] / lstm['train']['ms'],
            'pretrain_step_ms_per_sample': models['stefaland_pretrain']['train']['ms'],
            'inference_ratio_vs_cudalstm': models['stefaland_supervised']['inference']['ms'] / lstm['inference']['ms'],
            'finetune_step_over_floor': models['stefaland_finetune']['train']['ms']
            / (floor['frozen_encoder_inference']['ms'] + floor['decoder_training_step']['ms']),
            'evaluation_speedup_vs_nh_tester': report['evaluation']['speedup']}


def format_table(report: dict) -> str:
    """The results as plain-text tables: models, scaling, evaluation, keys against targets."""
    lines = [f"{report['machine']['device_name']}, torch {report['machine']['torch']}, profile {report['profile']}, "
             f"shape {report['settings']['shape']}", '',
             f"{'model':<22}{'train ms/sample':>16}{'infer ms/sample':>16}{'train peak MB':>15}"]
    for name, entry in report['models'].items():
        inference = f"{entry['inference']['ms']:.3f}" if 'inference' in entry else '-'
        lines.append(f"{name:<22}{entry['train']['ms']:>16.3f}{inference:>16}{_mb(entry['train']['peak_mb']):>15}")
    tokenizer = report['tokenizer']
    lines += ['', f"tokenizer fwd+bwd ms: ours {tokenizer['ours']['ms']:.1f} (peak {_mb(tokenizer['ours']['peak_mb'])} MB), "
                  f"loop {tokenizer['loop']['ms']:.1f} (peak {_mb(tokenizer['loop']['peak_mb'])} MB)", '',
              f"{'T':>5}{'F':>4}{'stefaland ms/sample':>21}{'cudalstm ms/sample':>20}{'ratio':>7}"]
    for row in report['scaling']['training_step_ms_per_sample']:
        lines.append(f"{row['T']:>5}{row['F']:>4}{row['stefaland_supervised']['ms']:>21.3f}"
                     f"{row['cudalstm']['ms']:>20.3f}{row['ratio']:>7.2f}")
    evaluation = report['evaluation']
    lines += ['', f"evaluation of {len(evaluation['basins'])} basins: NH tester {evaluation['nh_tester_s']:.1f} s "
                  f"({evaluation['nh_windows']} windows), strided {evaluation['strided_tester_s']:.2f} s "
                  f"({evaluation['strided_windows']} windows); median NSE {evaluation['NSE_nh_median']:.3f} vs "
                  f"{evaluation['NSE_strided_median']:.3f} (strided on NH's days "
                  f"{evaluation['NSE_strided_on_nh_days_median']:.3f})", '']
    for key, value in report['keys'].items():
        target = report['targets'].get(key)
        verdict = f"  target {target['target']}: {'met' if target['met'] else 'missed'}" if target else ''
        lines.append(f"{key:<36}{value:>10.3f}{verdict}")
    return '\n'.join(lines)


def _machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    if Path('/proc/cpuinfo').exists():
        names = [line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                 if line.startswith('model name')]
        cpu = names[0] if names else cpu
    return {'device': device.type, 'cpu': cpu, 'cpu_cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu,
            'torch': torch.__version__, 'neuralhydrology': metadata.version('neuralhydrology'),
            'nh_stefaland': nh_stefaland.__version__, 'python': platform.python_version(),
            'load_average_at_start': _load_average()}


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: timings on a shared machine are only as good as its idleness."""
    return [round(load, 2) for load in os.getloadavg()] if hasattr(os, 'getloadavg') else None


def _met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == '>=' else value <= bound


def _mb(value: float | None) -> str:
    return '-' if value is None else f"{value:.0f}"


def _progress(label: str, result: dict, unit: str = 'ms') -> None:
    print(f"{label}: {result['ms']:.3f} {unit}, peak {_mb(result['peak_mb'])} MB", file=sys.stderr, flush=True)


if __name__ == '__main__':
    main()
