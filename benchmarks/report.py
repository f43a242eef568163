"""The speed benchmark's results as Markdown tables (printed by speed.py and pasted into benchmarks/README.md)."""

MODEL_LABELS = {'cudalstm': 'NH cudalstm (hidden 256)', 'transformer': 'NH transformer (d 256, 4 layers)',
                'stefaland_supervised': 'StefaLand supervised', 'stefaland_finetune': 'StefaLand finetuning',
                'stefaland_pretrain': 'StefaLand pretraining'}


def format_markdown(report: dict) -> str:
    """Machine, per-model costs, tokenizer, finetuning floor, scaling, evaluation cost and the keys against targets."""
    machine, settings = report['machine'], report['settings']
    shape = settings['shape']
    threads = machine['torch_threads']
    lines = [f"Machine: {machine['device_name']} ({machine['cpu_cores']} cores, {threads} torch "
             f"thread{'' if threads == 1 else 's'}), torch {machine['torch']}, neuralhydrology "
             f"{machine['neuralhydrology']}, Python "
             f"{machine['python']}; load average (1, 5, 15 min) {machine['load_average_at_start']} at the start, "
             f"{machine.get('load_average_at_end')} at the end; {report['wall_s'] / 60:.1f} min in all. "
             f"Profile `{report['profile']}`: batch {shape['batch']}, T = {shape['seq_length']}, "
             f"F = {shape['n_dynamic']}, C = {shape['n_static']}.", '',
             '| model | parameters (trainable) | training step, ms/sample | inference, ms/sample | '
             'peak memory of a training step, MB |', '|---|---|---|---|---|']
    for name, entry in report['models'].items():
        inference = f"{entry['inference']['ms']:.2f}" if 'inference' in entry else '–'
        lines.append(f"| {MODEL_LABELS[name]} | {entry['parameters']:,} ({entry['trainable_parameters']:,}) | "
                     f"{entry['train']['ms']:.2f} | {inference} | {_mb(entry['train']['peak_mb'])} |")
    tokenizer, floor = report['tokenizer'], report['floor']
    lines += ['', '| tokenizer, forward + backward | ms per batch | peak memory, MB |', '|---|---|---|',
              f"| vectorised (nh_stefaland.model.tokens) | {tokenizer['ours']['ms']:.0f} | {_mb(tokenizer['ours']['peak_mb'])} |",
              f"| per-variable loop (reference design) | {tokenizer['loop']['ms']:.0f} | "
              f"{_mb(tokenizer['loop']['peak_mb'])} |", '',
              f"Finetuning floor: frozen-encoder inference {floor['frozen_encoder_inference']['ms']:.2f} ms/sample + "
              f"finetuning step without the encoder {floor['decoder_training_step']['ms']:.2f} ms/sample.", '',
              '| T | F | batch | StefaLand training step, ms/sample | with attention dropout 0 | cudalstm, ms/sample '
              '| ratio |', '|---|---|---|---|---|---|---|']
    for row in report['scaling']['training_step_ms_per_sample']:
        fused = row.get('stefaland_attention_dropout_0')
        fused = f"{fused['ms']:.2f} (peak {_mb(fused['peak_mb'])} MB vs {_mb(row['stefaland_supervised']['peak_mb'])})" \
            if fused else '–'
        lines.append(f"| {row['T']} | {row['F']} | {row['batch']} | {row['stefaland_supervised']['ms']:.2f} | {fused} | "
                     f"{row['cudalstm']['ms']:.2f} | {row['ratio']:.1f} |")
    evaluation = report['evaluation']
    lines += ['', '| evaluation of the same run | seconds | windows | median NSE | median KGE |',
              '|---|---|---|---|---|',
              f"| NH tester (one window per day) | {evaluation['nh_tester_s']:.1f} | {evaluation['nh_windows']} | "
              f"{evaluation['NSE_nh_median']:.3f} | {evaluation['KGE_nh_median']:.3f} |",
              f"| strided (one window per {evaluation['predict_last_n']} days) | {evaluation['strided_tester_s']:.2f} | "
              f"{evaluation['strided_windows']} | {evaluation['NSE_strided_median']:.3f} "
              f"({evaluation['NSE_strided_on_nh_days_median']:.3f} on NH's days) | "
              f"{evaluation['KGE_strided_median']:.3f} |", '',
              f"{len(evaluation['basins'])} basins ({', '.join(evaluation['basins'])}), test period "
              f"{evaluation['test_period'][0]} to {evaluation['test_period'][1]}.", '',
              *_finetune_cache(report.get('finetune_cache')),
              '| key | value | target |', '|---|---|---|']
    for key, value in report['keys'].items():
        target = report['targets'].get(key)
        verdict = f"{target['target']}: {'met' if target['met'] else '**missed**'}" if target else '–'
        lines.append(f"| `{key}` | {value:.3f} | {verdict} |")
    return '\n'.join(lines)


def _finetune_cache(section: dict | None) -> list[str]:
    """The finetuning update on cached encoder states against the uncached one and cudalstm (empty without it)."""
    if section is None:
        return []
    shape, model = section['shape'], section['model']
    lines = [f"Finetuning on cached encoder states, at the ungauged benchmark's size: d {model['stefaland_d_model']}, "
             f"{model['stefaland_nlayers']} layers, hidden {model['hidden_size']}, batch {shape['batch']}, "
             f"T = {shape['seq_length']}, F = {shape['n_dynamic']}, C = {shape['n_static']}, predict_last_n "
             f"{model['predict_last_n']}.", '',
             '| update | ms per update | ms/sample | vs cudalstm | peak memory, MB |', '|---|---|---|---|---|']
    labels = {'cudalstm': f"NH cudalstm (hidden {model['hidden_size']}) training step",
              'finetune_cached': 'StefaLand finetuning, cached states (`stefaland_cache_states`)',
              'finetune_uncached': 'StefaLand finetuning, frozen encoder computed',
              'cache_fill': 'filling the cache: frozen-encoder inference, once per window and run'}
    for name, label in labels.items():
        entry = section[name]
        lines.append(f"| {label} | {entry['ms'] * shape['batch']:.1f} | {entry['ms']:.3f} | "
                     f"{entry['ms'] / section['cudalstm']['ms']:.2f} | {_mb(entry['peak_mb'])} |")
    return lines + ['']


def _mb(value: float | None) -> str:
    return '–' if value is None else f"{value:,.0f}"
