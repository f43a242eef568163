"""Training throughput on 1 and more processes (DistributedDataParallel, as ``torchrun`` runs nh_stefaland's trainer).

    python benchmarks/distributed.py                          # CPU, small shapes, gloo: results/distributed_cpu.json
    python benchmarks/distributed.py --device cuda --profile paper --processes 1 2   # → results/distributed_cuda.json

Every process gets the same local batch (weak scaling: the global batch grows with the processes); the step is NH's
``BaseTrainer._train_epoch`` body as the distributed trainer runs it: ``pre_model_hook``, forward, the loss averaged
over the ranks for logging, ``zero_grad``, backward (DDP's gradient all-reduce), clipping, the optimizer step and the
``.item()`` of every logged loss. One process runs the plain model, as ``nh-run train`` does. The process counts run
in turns, round after round (each a fresh set of processes), so that a shared machine's changing load falls on all of
them; the median round is reported. Scaling efficiency = samples/s on n processes / (n × samples/s on one).
"""
import argparse
import json
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import nh_stefaland
from nh_stefaland.nh.distributed import DistributedModel, RankAveragedLoss

from speed import _machine
from workloads import STEFALAND, Shape, build

RESULTS = Path(__file__).resolve().parent / 'results'
# the pretraining step: small shapes on the CPU; the paper's model (d 256, 4 layers, T 365) for GPUs
PROFILES = {
    'small': {'shape': Shape(batch=16, seq_length=90, n_dynamic=5, n_static=48),
              'model': {**STEFALAND, 'stefaland_d_model': 64, 'stefaland_nheads': 4,
                        'stefaland_dim_feedforward': 128, 'stefaland_nlayers': 2, 'stefaland_token_hidden': 16,
                        'hidden_size': 64, 'stefaland_mask_min_days': 5, 'stefaland_mask_max_days': 30}},
    'paper': {'shape': Shape(batch=256, seq_length=365, n_dynamic=5, n_static=48), 'model': {}},
}
STEPS = {'cpu': (2, 10), 'cuda': (5, 30)}  # warm-up and timed steps per round
TARGET_EFFICIENCY = 0.9  # at 2 GPUs, paper profile


def main(argv: list[str] | None = None) -> dict:
    """Run the rounds, print a Markdown table and write the JSON file; returns what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--profile', choices=sorted(PROFILES), help="default: small on the CPU, paper on CUDA")
    parser.add_argument('--processes', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1, help="torch threads per process on the CPU")
    parser.add_argument('--output', type=Path, help="JSON file (default: results/distributed_<device>.json)")
    args = parser.parse_args(argv)
    profile = args.profile or ('paper' if args.device == 'cuda' else 'small')
    if args.device == 'cuda' and max(args.processes) > torch.cuda.device_count():
        raise ValueError(f"--processes {max(args.processes)} needs as many GPUs; "
                         f"this machine has {torch.cuda.device_count()}.")
    machine = _machine(torch.device(args.device, 0) if args.device == 'cuda' else torch.device('cpu'))
    rounds = {n: [] for n in args.processes}
    for round_index in range(args.rounds):
        for n in args.processes:
            rounds[n].append(_run(n, args.device, profile, args.threads))
            print(f"round {round_index + 1}, {n} process(es): {rounds[n][-1]:.1f} samples/s", file=sys.stderr,
                  flush=True)
    single = statistics.median(rounds[min(args.processes)]) / min(args.processes)
    results = {str(n): {'samples_per_s': statistics.median(values), 'rounds_samples_per_s': values,
                        'efficiency': statistics.median(values) / (n * single)} for n, values in rounds.items()}
    shape = PROFILES[profile]['shape']
    report = {'machine': {**machine, 'torch_threads': args.threads if args.device == 'cpu' else None},
              'profile': profile, 'workload': 'stefaland_pretrain', 'local_batch': shape.batch,
              'seq_length': shape.seq_length, 'n_dynamic': shape.n_dynamic, 'n_static': shape.n_static,
              'model': {**STEFALAND, **PROFILES[profile]['model']}, 'steps': dict(zip(('warmup', 'timed'),
                                                                                     STEPS[args.device])),
              'backend': 'nccl' if args.device == 'cuda' else 'gloo', 'results': results}
    if args.device == 'cuda' and profile == 'paper' and '2' in results:
        report['target'] = {'efficiency_at_2': TARGET_EFFICIENCY,
                            'met': results['2']['efficiency'] >= TARGET_EFFICIENCY}
    output = args.output or RESULTS / f'distributed_{args.device}.json'
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(format_markdown(report))
    return report


def format_markdown(report: dict) -> str:
    """The table of benchmarks/README.md."""
    lines = ['| processes | global batch | samples/s (median) | rounds | scaling efficiency |', '|---|---|---|---|---|']
    for n, result in report['results'].items():
        rounds = ', '.join(f'{value:.0f}' for value in result['rounds_samples_per_s'])
        lines.append(f"| {n} | {int(n) * report['local_batch']} | {result['samples_per_s']:.0f} | {rounds} | "
                     f"{100 * result['efficiency']:.0f} % |")
    return '\n'.join(lines)


def _run(processes: int, device: str, profile: str, threads: int) -> float:
    """Samples/s of all processes together, for one round on ``processes`` fresh processes."""
    if processes == 1:
        return _worker(0, 1, device, profile, threads)
    port, results = _free_port(), mp.get_context('spawn').SimpleQueue()
    mp.start_processes(_spawned, args=(processes, device, profile, threads, port, results), nprocs=processes,
                       start_method='spawn')
    return results.get()


def _spawned(rank: int, processes: int, device: str, profile: str, threads: int, port: int, results) -> None:
    dist.init_process_group('nccl' if device == 'cuda' else 'gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=processes)
    try:
        samples_per_s = _worker(rank, processes, device, profile, threads)
        if rank == 0:
            results.put(samples_per_s)
    finally:
        dist.destroy_process_group()


def _worker(rank: int, processes: int, device: str, profile: str, threads: int) -> float:
    warnings.filterwarnings('ignore', message='enable_nested_tensor is True')
    torch.set_num_threads(threads)
    nh_stefaland.register()
    target = torch.device('cuda', rank) if device == 'cuda' else torch.device('cpu')
    if target.type == 'cuda':
        torch.cuda.set_device(target)
    setup = PROFILES[profile]
    workload = build('stefaland_pretrain', setup['shape'], target, seed=0, **setup['model'])
    model, loss_obj = workload.model, _loss(workload, target, processes)
    if processes > 1:
        model = DistributedModel(model, device_ids=[rank] if target.type == 'cuda' else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=workload.cfg.learning_rate[0])

    def step():
        model.train()
        data = model.pre_model_hook(workload.batch, is_train=True)
        loss, parts = loss_obj(model(data), data)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), workload.cfg.clip_gradient_norm)
        optimizer.step()
        for value in parts.values():
            value.item()

    warmup, timed = STEPS[device]
    for _ in range(warmup):
        step()
    _synchronise(target, processes)
    start = time.perf_counter()
    for _ in range(timed):
        step()
    _synchronise(target, processes)
    elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=target)
    if processes > 1:
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return processes * setup['shape'].batch * timed / elapsed.item()


def _loss(workload, target: torch.device, processes: int) -> torch.nn.Module:
    from neuralhydrology.training import get_loss_obj

    loss_obj = get_loss_obj(workload.cfg).to(target)
    return RankAveragedLoss(loss_obj) if processes > 1 else loss_obj


def _synchronise(target: torch.device, processes: int) -> None:
    if target.type == 'cuda':
        torch.cuda.synchronize(target)
    if processes > 1:
        dist.barrier()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


if __name__ == '__main__':
    main()
