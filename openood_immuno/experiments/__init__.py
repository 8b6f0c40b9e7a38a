"""What orchestrates a whole run: the builtin runner (OpenOOD and stream protocols), result
folders, the report, the falsification study and the bodies of the feature-extraction command."""
