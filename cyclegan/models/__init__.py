"""The networks: generators (a registry, one class per architecture) and discriminators."""
