"""Plain, picklable errors that cross Ray actor boundaries with a message a user can act on."""


class RunError(RuntimeError):
    """A distributed run could not go on: the message names the phase and the component that failed."""
