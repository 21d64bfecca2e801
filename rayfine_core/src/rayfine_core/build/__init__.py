"""Building images: detect an environment's type, stage its context, build in two stages."""
