"""The static snapshot of a live widget: its final state as plain HTML in the output.

A widget output shows only with a kernel (or saved widget state): reopened,
JupyterLab and Notebook 7 show "Error displaying widget: model not found" for it,
as they prefer the widget's mime type to any other. The mixin adds ``text/html``
(the widget's :meth:`html`) to the display bundle and displays with a display
id; :meth:`_update_displays` replaces the displayed output by that HTML *alone*
once the widget has nothing more to show live (a run ended), so the saved
notebook shows the last state everywhere (Lab, Notebook 7, nbconvert, GitHub);
:meth:`_show_live` puts the widget back (the view runs again).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["StaticSnapshot"]

log = logging.getLogger(__name__)


class StaticSnapshot:
    """Mixin for an ipywidgets widget that defines ``html() -> str``."""

    _handles: list[Any]
    #: The displayed outputs are the static HTML alone (the widget is done).
    _static = False

    def html(self) -> str:
        """The widget's state as static HTML."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        if self._static:
            return {"text/plain": repr(self), "text/html": self.html()}
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is not None:
            bundle["text/html"] = self.html()
        return bundle

    def _show_live(self) -> None:
        """Show the widget again in the outputs that show its static HTML."""
        if self._static:
            self._static = False
            self._publish()

    def _ipython_display_(self) -> None:
        """Display with an id, so the end of the run can update the output."""
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        if bundle is not None:
            self._handles.append(display(bundle, raw=True, display_id=True))

    def _update_displays(self) -> None:
        """Replace the displayed outputs by the final HTML alone, now and once
        more when the next cell runs.
        """
        self._static = True
        if not self._handles:
            return
        self._publish()
        # From a thread, the update goes out with the parent header of the
        # last cell run; a frontend that no longer listens to that cell (the
        # run ended in the background) drops it. Sent again from the next
        # cell, it is taken (update_display_data works across cells).
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return

        def again(*_: object) -> None:
            shell.events.unregister("pre_run_cell", again)
            if self._static:
                self._publish()

        shell.events.register("pre_run_cell", again)

    def _publish(self) -> None:
        bundle = self._repr_mimebundle_()
        for handle in self._handles:
            try:
                handle.update(bundle, raw=True)
            except Exception:  # no kernel to send to, e.g. in a script
                log.exception("nbflow could not update the output of %r", self)
