"""Backbones (`backbones.BACKBONES`), heads (`heads.HEADS`), losses (`losses.LOSSES`): tables that load no Keras;
the landmark model (`landmark_model`) and the Keras classes kerakp registers (`custom`)."""
