"""The ``nh-stefaland`` command: tools around NeuralHydrology runs that ``nh-run`` does not offer."""
import argparse
import importlib
import sys

# sub-command → (module exposing `add_arguments(parser)` and `run(args) -> int`, one-line help)
COMMANDS = {
    'pub': ('nh_stefaland.tools.pub.cli', "Ungauged-basin (PUB) and ungauged-region (PUR) tests over basin folds, with a report."),
    'reconstruct': ('nh_stefaland.tools.reconstruct', "Masked-reconstruction skill of a run (RMSE, NSE per variable) against "
                    "mean imputation and linear interpolation; writes a CSV and a PNG into the run directory."),
    'pretrained': ('nh_stefaland.tools.pretrained', "The pretrained encoders shipped with the package: inputs, attributes, "
                   "periods, size; finetune one with base_run_dir: stefaland:<name>."),
    'embed': ('nh_stefaland.tools.embed', "Per-basin (and, with --daily, per-day) encoder embeddings of a run as NetCDF."),
    'predict': ('nh_stefaland.tools.predict.cli', "Daily streamflow for basins without a gauge from one run or an "
                "ensemble (run folders or a pub output), with spread, quantiles, input coverage and an attribute "
                "distance to the training basins, as one NetCDF file."),
    'pack': ('nh_stefaland.tools.pack', "Pack the basins, variables and periods of an NH config into a "
             "store (resumable, parallel, appendable); train on it with stefaland_store: STORE."),
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog='nh-stefaland', description=__doc__)
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(subparsers.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


def console() -> int:
    """The ``nh-stefaland`` script: :func:`main`, with a wrong input reported in one line and exit status 2."""
    try:
        return main()
    except (ValueError, FileNotFoundError) as error:
        print(f"nh-stefaland: error: {error}", file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(console())
