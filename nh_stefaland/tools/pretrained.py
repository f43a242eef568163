"""``nh-stefaland pretrained``: the pretrained encoders shipped with the package, and how to finetune one."""
import argparse
import textwrap

from nh_stefaland import pretrained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', nargs='?', default=None,
                        help="One encoder (with or without the stefaland: prefix): also prints the paths of its "
                             "basin list and model card.")


def run(args: argparse.Namespace) -> int:
    """Print every shipped encoder (or the one named) and return 0."""
    chosen = pretrained.names() if args.name is None else [_bare(args.name)]
    if not chosen:
        print("No pretrained encoder is shipped with this installation.")
        return 0
    for name in chosen:
        print(describe(pretrained.manifest(name), detailed=args.name is not None))
    if args.name is None:
        print("Finetune one with `base_run_dir: stefaland:<name>` in a finetuning config (docs/pretrain_finetune.md).")
    return 0


def describe(manifest: dict, detailed: bool = False) -> str:
    """A few lines on one encoder: version, size, inputs, attributes, periods, basins, pretraining compute."""
    folder, arch = pretrained.FOLDER / manifest['name'], manifest['architecture']
    lines = [f"stefaland:{manifest['name']}  (version {manifest['version']}, {manifest['size_bytes'] / 1e6:.2f} MB, "
             f"{manifest['parameters']:,} parameters, sha256 {manifest['sha256'][:12]}…)",
             f"  architecture: d {arch['stefaland_d_model']}, {arch['stefaland_nlayers']} layers, "
             f"{arch['stefaland_nheads']} heads, seq_length {arch['seq_length']}, "
             f"{'causal' if arch['stefaland_causal'] else 'bidirectional'} "
             f"(stefaland_causal: {arch['stefaland_causal']})",
             f"  dynamic inputs ({len(manifest['dynamic_inputs'])}): {', '.join(manifest['dynamic_inputs'])}",
             _wrapped(f"  static attributes ({len(manifest['static_attributes'])}): "
                      f"{', '.join(manifest['static_attributes'])}"),
             _wrapped(f"  pretrained on {len(manifest['basins'])} basins ({manifest['dataset']}), "
                      f"{manifest['periods']['train'][0]} … {manifest['periods']['train'][1]}; "
                      f"{manifest['updates']:,} updates of {manifest['batch_size']} windows, "
                      f"{manifest['wall_hours']:.1f} h on {manifest['hardware']}")]
    if detailed:
        lines += [f"  basins: {folder / 'basins.txt'}", f"  model card: {folder / 'MODEL_CARD.md'}"]
    return '\n'.join(lines)


def _bare(name: str) -> str:
    return pretrained.folder(name).name  # raises for an unknown name


def _wrapped(text: str) -> str:
    return '\n'.join(textwrap.wrap(text, width=116, subsequent_indent='    '))
