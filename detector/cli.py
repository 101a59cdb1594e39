import click


@click.group()
def main():
    """Detect strategic minerals crossing borders by a detour or under a false declaration."""
