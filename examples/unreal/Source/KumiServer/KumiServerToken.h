// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
#pragma once

#include "CoreMinimal.h"

/** Claims of a verified kumi server token (minted by the director for one player and session). */
struct FKumiServerClaims
{
	FString PlayerId;  // sub
	FString SessionId; // sid
	FString TokenId;   // jti
	FDateTime Expiry;  // exp
};

/**
 * Verifies kumi server tokens the way kumi's own game server does (internal/token.VerifyServerToken):
 *  - header: typ must be "kumi-server+jwt"; kid must name a key from the JWKS; alg must be the ONE
 *    algorithm that key allows (Ed25519 -> EdDSA, P-256 -> ES256). "none", HS256 and anything else
 *    are refused before any signature check (no algorithm confusion);
 *  - signature over "<header>.<payload>" with that key (OpenSSL EVP);
 *  - iss == the configured issuer, aud contains this server's name, nbf/exp with a small leeway,
 *    sub, sid and jti present;
 *  - single use: a jti is admitted once; remembered until its exp passes.
 * Thread-safety: call from the game thread (PreLogin runs there).
 */
class FKumiServerTokenVerifier
{
public:
	/** Jwks: the JSON written by `kumi token keygen` (jwks.json) or served by your issuer. */
	bool LoadJwks(const FString& Jwks, FString& OutError);

	FString Issuer = TEXT("kumi");   // --issuer of the director's signer
	FString ServerName;              // this server's name: the Agones GameServer name
	FTimespan Leeway = FTimespan::FromSeconds(5);
	int32 MaxTokenBytes = 2048;      // same cap as the UDP protocol's MaxToken

	/** Returns false with a reason a developer can act on. */
	bool Verify(const FString& Token, FKumiServerClaims& Out, FString& OutError);

private:
	struct FKey
	{
		FString Alg;          // "EdDSA" or "ES256": the only algorithm this key verifies
		TArray<uint8> X, Y;   // Ed25519: X = 32-byte public key. P-256: affine coordinates.
	};
	bool VerifySignature(const FKey& Key, const FString& SigningInput, const TArray<uint8>& Sig) const;

	TMap<FString, FKey> Keys;          // kid -> key
	TMap<FString, FDateTime> UsedJtis; // jti -> exp, pruned on each Verify
};
