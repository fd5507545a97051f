"""The book's chapter glue: one module per notebook, named after it.

Each module arranges the library's runs and results for its chapter's page (its grid
from the chapter's parameters, its tables, the paper's numbers as reported, the
helpers its cells call). Chapter modules depend on the library and on
:mod:`dsgd.chapters._common`, never on each other; the library never imports them, and
``dsgd.__all__`` lists none of their names.
"""
