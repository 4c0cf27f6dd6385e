"""What the attack tests measured (races run, kills done, time taken), printed by conftest.py's
terminal summary so a run reports its figures."""
FIGURES = []


def record(line):
    FIGURES.append(line)
