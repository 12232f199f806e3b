"""The project's leaf core: what every other package may import (metric registry, ...); it imports nothing
of the project."""
