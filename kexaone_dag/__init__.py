"""kexaone-dag: the K-EXAONE training recipe as a Dagster code location."""

import warnings

from dagster import BetaWarning, PreviewWarning

# observable_source_asset and AssetSelection.all(include_sources=...) are marked beta in Dagster 1.13;
# the warnings would bury the one-line errors this project promises.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
