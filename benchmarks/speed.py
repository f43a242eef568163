"""Speed and memory of StefaLand against NH's cudalstm and transformer, measured side by side in one process.

    python benchmarks/speed.py            # full run: writes benchmarks/results/speed.json (speed_cuda.json on CUDA)
    python benchmarks/speed.py --quick    # reduced sizes, under a minute on a 2-core CPU: a check, not a result
    python benchmarks/speed.py --only finetune_cache   # that section alone, merged into the existing JSON file

Every figure is the median of several timed calls after warm-up (see ``timing.Repetitions`` and PROFILES below);
benchmarks/README.md describes the method and the committed results.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import torch

import nh_stefaland

from evaluation_cost import EvaluationSetup, compare_testers
from report import format_markdown
from timing import Repetitions, measure_together
from workloads import LoopTokens, Shape, build, frozen_encoder_floor, with_cached_states

RESULTS = Path(__file__).resolve().parent / 'results'
PAPER_MODEL = {'stefaland_d_model': 256, 'stefaland_nheads': 4, 'stefaland_dim_feedforward': 512,
               'stefaland_nlayers': 4, 'hidden_size': 256}
PROFILES = {
    'full': {'shape': Shape(batch=256, seq_length=365, n_dynamic=5, n_static=48),
             'scaling_batch': {'cpu': 16, 'cuda': 256},
             'lengths': (180, 365, 730), 'variables': (5, 10, 20),
             'evaluation': EvaluationSetup(model=PAPER_MODEL, seq_length=365, train_basins=2, test_basins=2,
                                           test_start='1989-10-01', test_end='1992-09-30', batch=256,
                                           train_batch=32, updates=8)},
    'quick': {'shape': Shape(batch=4, seq_length=60, n_dynamic=5, n_static=48),
              'scaling_batch': {'cpu': 2, 'cuda': 4},
              'lengths': (30, 60), 'variables': (5, 10),
              'evaluation': EvaluationSetup(model={'stefaland_d_model': 32, 'stefaland_nheads': 2,
                                                   'stefaland_dim_feedforward': 64, 'stefaland_nlayers': 1,
                                                   'hidden_size': 32},
                                            seq_length=60, train_basins=2, test_basins=1,
                                            test_start='1989-10-01', test_end='1990-09-30', batch=256,
                                            train_batch=16, updates=1)},
}
# the ungauged benchmark's finetuning (benchmarks/ungauged/stefaland_*.yml) and its LSTM: d 64, 2 layers, hidden 64
UNGAUGED_MODEL = {'stefaland_d_model': 64, 'stefaland_nheads': 4, 'stefaland_dim_feedforward': 128,
                  'stefaland_nlayers': 2, 'stefaland_dropout': 0.0, 'stefaland_token_hidden': 32,
                  'hidden_size': 64, 'output_dropout': 0.2, 'predict_last_n': 180}
CACHE_SHAPES = {'full': Shape(batch=64, seq_length=365, n_dynamic=3, n_static=27),
                'quick': Shape(batch=8, seq_length=60, n_dynamic=3, n_static=27)}
CACHE_REPETITIONS = {'cpu': Repetitions(warmup=2, budget_s=20.0, minimum=5, maximum=15),
                     'cuda': Repetitions(warmup=3, budget_s=5.0, minimum=10, maximum=50)}
SECTIONS = ('finetune_cache',)
REPETITIONS = {
    ('full', 'cpu'): Repetitions(warmup=1, budget_s=25.0, minimum=2, maximum=7),
    ('full', 'cuda'): Repetitions(warmup=3, budget_s=5.0, minimum=10, maximum=50),
    ('quick', 'cpu'): Repetitions(warmup=1, budget_s=1.0, minimum=2, maximum=3),
    ('quick', 'cuda'): Repetitions(warmup=2, budget_s=1.0, minimum=3, maximum=10),
}
MODEL_NAMES = ('cudalstm', 'transformer', 'stefaland_supervised', 'stefaland_finetune', 'stefaland_pretrain')
INFERRED = ('cudalstm', 'transformer', 'stefaland_supervised')  # finetuning infers as supervised; pretraining does not
TARGETS = {'tokenizer_speedup_vs_loop': ('>=', 3.0), 'finetune_step_ratio_vs_cudalstm': ('<=', 2.5),
           'finetune_step_over_floor': ('<=', 1.2), 'evaluation_speedup_vs_nh_tester': ('>=', 50.0),
           'finetune_update_ratio_vs_cudalstm': ('<=', 1.5)}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print its Markdown tables and write the JSON file; returns what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help="reduced sizes: a check that everything runs")
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help="CPU threads for torch (default: torch's, one per core)")
    parser.add_argument('--output', type=Path, help="JSON file (default: benchmarks/results/speed[_cuda].json; "
                                                    "with --quick, nh_stefaland_speed_quick.json in the temp folder)")
    parser.add_argument('--render', type=Path, help="print the Markdown tables of an existing JSON file and exit")
    parser.add_argument('--only', choices=SECTIONS, help="measure this section only and update it (and its keys) "
                                                         "in the existing JSON file")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        print(format_markdown(report))
        return report
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore', message='enable_nested_tensor is True')  # NH's transformer is sequence-first
    nh_stefaland.register()
    profile = 'quick' if args.quick else 'full'
    device = torch.device(args.device)
    settings, repetitions = PROFILES[profile], REPETITIONS[(profile, device.type)]
    output = args.output or (Path(tempfile.gettempdir()) / 'nh_stefaland_speed_quick.json' if args.quick else
                             RESULTS / ('speed_cuda.json' if device.type == 'cuda' else 'speed.json'))
    if args.only:
        return _update_section(output, profile, device)
    started = time.perf_counter()
    report = {'machine': _machine(device), 'profile': profile,
              'settings': {'shape': vars(settings['shape']), 'scaling_batch': settings['scaling_batch'][device.type],
                           'repetitions': vars(repetitions), 'evaluation': vars(settings['evaluation'])}}
    report['tokenizer'] = _tokenizer(settings['shape'], device, repetitions)
    report['models'], report['floor'] = _models(settings['shape'], device, repetitions)
    report['scaling'] = _scaling(settings, device, repetitions)
    report['evaluation'] = compare_testers(settings['evaluation'], device=str(device))
    report['finetune_cache'] = _finetune_cache(CACHE_SHAPES[profile], device)
    _set_keys_and_targets(report)
    report['wall_s'] = time.perf_counter() - started
    report['machine']['load_average_at_end'] = _load_average()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(format_markdown(report))
    print(f"\nwritten to {output} ({report['wall_s']:.0f} s)")
    return report


def _tokenizer(shape: Shape, device: torch.device, repetitions: Repetitions) -> dict:
    """Forward + backward (from a fixed upstream gradient, as the encoder would pass) of our tokenizer and of the
    reference loop, with identical weights and inputs; 10 % of the values hidden."""
    ours = build('stefaland_supervised', shape, device).model.tokens
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
    calls = {name: _backward_call(tokens.train(), upstream, dynamic, dynamic_mask, static, static_mask)
             for name, tokens in (('ours', ours), ('loop', loop))}
    results = {name: result.as_dict() for name, result in measure_together(calls, device, repetitions).items()}
    for name, result in results.items():
        _progress(f"tokenizer {name}", result)
    return {**results, 'max_abs_difference_eval': difference}


def _models(shape: Shape, device: torch.device, repetitions: Repetitions) -> tuple[dict, dict]:
    """Training step and inference per sample of each model, and the finetuning floor, timed in turns."""
    workloads = {name: build(name, shape, device) for name in MODEL_NAMES}
    calls = {}
    for name, workload in workloads.items():
        calls[f'{name}/train'] = workload.training_step()
        if name in INFERRED:
            calls[f'{name}/inference'] = workload.inference()
    calls['floor/frozen_encoder_inference'], calls['floor/decoder_training_step'] = \
        frozen_encoder_floor(workloads['stefaland_finetune'])
    measured = {label: result.as_dict(per=shape.batch)
                for label, result in measure_together(calls, device, repetitions).items()}
    models = {name: {'parameters': sum(p.numel() for p in workload.model.parameters()),
                     'trainable_parameters': sum(p.numel() for p in workload.model.parameters() if p.requires_grad)}
              for name, workload in workloads.items()}
    floor = {}
    for label, result in measured.items():
        group, kind = label.split('/')
        (floor if group == 'floor' else models[group])[kind] = result
        _progress(label, result, 'ms/sample')
    return models, floor


def _scaling(settings: dict, device: torch.device, repetitions: Repetitions) -> dict:
    """Training step per sample of StefaLand and cudalstm over window lengths T and numbers of inputs F; over T also
    StefaLand with ``stefaland_attention_dropout: 0`` (fused attention in CPU training)."""
    base, batch = settings['shape'], settings['scaling_batch'][device.type]
    shapes = [Shape(batch, length, base.n_dynamic, base.n_static) for length in settings['lengths']]
    shapes += [Shape(batch, base.seq_length, n, base.n_static) for n in settings['variables'] if n != base.n_dynamic]
    rows = []
    for shape in shapes:
        calls = {name: build(name, shape, device).training_step() for name in ('stefaland_supervised', 'cudalstm')}
        if shape.n_dynamic == base.n_dynamic:
            calls['stefaland_attention_dropout_0'] = build('stefaland_supervised', shape, device,
                                                           stefaland_attention_dropout=0).training_step()
        row = {'T': shape.seq_length, 'F': shape.n_dynamic, 'batch': shape.batch}
        row.update({name: result.as_dict(per=shape.batch)
                    for name, result in measure_together(calls, device, repetitions).items()})
        row['ratio'] = row['stefaland_supervised']['ms'] / row['cudalstm']['ms']
        _progress(f"scaling T={shape.seq_length} F={shape.n_dynamic}", row['stefaland_supervised'], 'ms/sample')
        rows.append(row)
    return {'training_step_ms_per_sample': rows}


def _finetune_cache(shape: Shape, device: torch.device) -> dict:
    """At the ungauged benchmark's size: a finetuning update on cached encoder states, the same update computing the
    frozen encoder, and a cudalstm training step, timed in turns; plus the frozen encoder's inference per window,
    which is what filling the cache costs once per run."""
    model = {**UNGAUGED_MODEL, 'predict_last_n': min(UNGAUGED_MODEL['predict_last_n'], shape.seq_length)}
    uncached = build('stefaland_finetune', shape, device, **model)
    cached = with_cached_states(build('stefaland_finetune', shape, device, **model))
    lstm = {key: value for key, value in model.items() if not key.startswith('stefaland_')}
    calls = {'cudalstm': build('cudalstm', shape, device, **lstm).training_step(),
             'finetune_cached': cached.training_step(), 'finetune_uncached': uncached.training_step(),
             'cache_fill': frozen_encoder_floor(uncached)[0]}
    section = {'shape': vars(shape), 'model': model, 'repetitions': vars(CACHE_REPETITIONS[device.type])}
    for name, result in measure_together(calls, device, CACHE_REPETITIONS[device.type]).items():
        section[name] = result.as_dict(per=shape.batch)
        _progress(f"finetune_cache {name}", section[name], 'ms/sample')
    return section


def _update_section(output: Path, profile: str, device: torch.device) -> dict:
    """Measure the finetuning-cache section alone and write it, its keys and targets into ``output``."""
    report = json.loads(output.read_text())
    started, load = time.perf_counter(), _load_average()
    report['finetune_cache'] = _finetune_cache(CACHE_SHAPES[profile], device)
    report['finetune_cache'].update({'wall_s': time.perf_counter() - started, 'load_average_at_start': load,
                                     'load_average_at_end': _load_average(),
                                     'torch_threads': torch.get_num_threads()})
    _set_keys_and_targets(report)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(format_markdown(report))
    print(f"\nsection finetune_cache written to {output}")
    return report


def _set_keys_and_targets(report: dict) -> None:
    report['keys'] = _keys(report)
    report['targets'] = {key: {'target': f'{op} {bound:g}', 'met': _met(report['keys'][key], op, bound)}
                         for key, (op, bound) in TARGETS.items() if key in report['keys']}


def _backward_call(tokens: torch.nn.Module, upstream: torch.Tensor, *inputs: torch.Tensor):
    return lambda: tokens(*inputs).backward(upstream)


def _keys(report: dict) -> dict:
    models, floor = report['models'], report['floor']
    lstm = models['cudalstm']
    cache = report.get('finetune_cache')
    cached = {'finetune_update_ratio_vs_cudalstm': cache['finetune_cached']['ms'] / cache['cudalstm']['ms']} \
        if cache else {}
    return {'tokenizer_speedup_vs_loop': report['tokenizer']['loop']['ms'] / report['tokenizer']['ours']['ms'],
            'finetune_step_ratio_vs_cudalstm': models['stefaland_finetune']['train']['ms'] / lstm['train']['ms'],
            'supervised_step_ratio_vs_cudalstm': models['stefaland_supervised']['train']['ms'] / lstm['train']['ms'],
            'pretrain_step_ms_per_sample': models['stefaland_pretrain']['train']['ms'],
            'inference_ratio_vs_cudalstm': models['stefaland_supervised']['inference']['ms'] / lstm['inference']['ms'],
            'finetune_step_over_floor': models['stefaland_finetune']['train']['ms']
            / (floor['frozen_encoder_inference']['ms'] + floor['decoder_training_step']['ms']),
            'evaluation_speedup_vs_nh_tester': report['evaluation']['speedup'], **cached}


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


def _progress(label: str, result: dict, unit: str = 'ms') -> None:
    peak = '-' if result['peak_mb'] is None else f"{result['peak_mb']:.0f}"
    print(f"{label}: {result['ms']:.3f} {unit}, peak {peak} MB", file=sys.stderr, flush=True)


if __name__ == '__main__':
    main()
