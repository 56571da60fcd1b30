"""The recipe builder: what the dashboard's builder page does, without the web.

``document`` (a recipe as plain data, written back to YAML keeping its comments), ``fields``
(what each step may map from), ``check`` (one template checked by ``splice validate``'s own
checker), ``options`` (an id input's real choices from the connection), ``preview`` (a step's
request rendered on a sample record) and ``save`` (the file written and registered).
"""
