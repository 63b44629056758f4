"""Variational autoencoder (Kingma and Welling; the notes, chapter 20): a Gaussian
encoder q(z|x), a Bernoulli decoder p(x|z) and a standard normal prior on z.

Trained on `reconstruction + beta * KL(q(z|x) || p(z))` per sample, the negative ELBO
at beta = 1; `beta` > 1 is the beta-VAE's pressure towards a factorised code. The
reported `loss` is the negative ELBO whatever beta is.
"""
from __future__ import annotations

import torch
from torch import nn

from hypersweep.models.autoencoder import MLP_ARCH, Activation, Arch, encoder_decoder
from hypersweep.models.errors import check_at_least
from hypersweep.models.generative import bce
from hypersweep.models.registry import register


@register("vae", task="generation", family="vae", used_when=MLP_ARCH)
def vae(*, input_shape: tuple[int, ...], n_outputs: int = 0, latent_size: int = 8,
        beta: float = 1.0, arch: Arch = "mlp", depth: int = 1, width: int = 256,
        channels: int = 16, activation: Activation = "relu") -> nn.Module:
    """Encoder (MLP of `depth` x `width`, or two stride-2 convs) to the mean and log
    variance of a `latent_size` Gaussian; decoder back to pixels in [0, 1]."""
    check_at_least(1, latent_size=latent_size, width=width, channels=channels)
    check_at_least(0, beta=beta)
    encoder, decoder = encoder_decoder(input_shape, 2 * latent_size, arch=arch, depth=depth,
                                       width=width, channels=channels, activation=activation)
    # The decoder's first layer takes the latent z, not a code twice its size.
    first = decoder[0]
    decoder[0] = nn.Linear(latent_size, first.out_features)
    return VAE(encoder, decoder, latent_size, beta)


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_size: int,
                 beta: float) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.latent_size, self.beta = latent_size, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction from the posterior mean (deterministic)."""
        return self.decoder(self.encoder(x).chunk(2, dim=1)[0])

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, its -log p(x|z), KL(q(z|x) || N(0, I))), both per sample."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        # Reparameterisation: z = mu + sigma * eps keeps the sample differentiable.
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
        recon = self.decoder(z)
        # Clamped: the data is in [0, 1] (Generation.check_data), but `input_noise` moves
        # the training batches out of it.
        nll = bce(recon, x.float().clamp(0, 1), reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
        return recon, nll, kl

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """(the training objective, recon + beta * KL; its report, where `loss` is the
        negative ELBO, recon + KL, so that models trained with different beta compare)."""
        _, nll, kl = self.elbo_terms(x)
        return nll + self.beta * kl, {"loss": (nll + kl).item(), "recon": nll.item(),
                                      "kl": kl.item()}

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_size, generator=generator).to(device)
        return self.decoder(z)
