"""The closed loop, written once for every pipeline that declares a `LoopSpec` (`spec`): labels, datasets,
the turn (`turn`: build -> train -> offline metrics -> backtest -> decide -> report) and synthetic feedback."""
