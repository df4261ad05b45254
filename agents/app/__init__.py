"""The application: tracked search runs and the ``hwprune`` CLI, on top of the search methods.

``search`` (``SearchConfig``, ``run_search``: validate, build the task, run an agent,
track it, export the result) with ``search_params``, ``shortlist`` and ``finalize``;
``frontier`` (one budget-conditioned agent, a front of policies); ``sweep`` (grids of
searches on Ray); ``finetune_run`` (recovering a searched policy after the fact);
``catalog`` (the names the CLI accepts, known without torch); ``cli`` and ``commands/``
(the Typer commands); ``ui_check`` (screenshots of the MLflow UI).

The search methods below (``agents.base``, ``agents.learners``...) never import this
package. Importing it imports nothing, so that the CLI starts without torch.
"""
