"""Deploy targets: places a bundle runs beyond one machine.

``kingpost.deploy.ray`` runs a bundle as a Ray Serve application. Each target imports its
optional dependency inside functions, so importing this package costs nothing.
"""
