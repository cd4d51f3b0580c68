"""The command-line programs (`track`, `quantize`, the fleet's front end) and their option parsing.

Only this subpackage knows argparse: each program turns its options into typed requests and configs
(`apps.models.ModelRequest`, `tracker.TrackerConfig`, `quant.QuantConfig`, `apps.fleet.FleetConfig`) and hands
them to the library below.
"""
