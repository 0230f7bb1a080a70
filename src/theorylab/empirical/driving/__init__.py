"""Foundation models in driving (Gao et al., survey): planning as language modelling and scenario
generation, on highway-env's highway with its IDM + MOBIL vehicles as the expert."""
