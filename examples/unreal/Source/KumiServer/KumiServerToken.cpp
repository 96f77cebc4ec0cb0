// NOT COMPILED HERE. Illustrative Unreal Engine 5 dedicated-server code; see ../../README.md.
// Build.cs: PrivateDependencyModuleNames += { "Json" }; AddEngineThirdPartyPrivateStaticDependencies(Target, "OpenSSL");
// UE5 ships OpenSSL 1.1.1+ for server targets, which has Ed25519 (EVP_PKEY_ED25519) and P-256.
#include "KumiServerToken.h"

#include "Dom/JsonObject.h"
#include "Serialization/JsonReader.h"
#include "Serialization/JsonSerializer.h"
#include "Misc/Base64.h"

THIRD_PARTY_INCLUDES_START
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/bn.h>
THIRD_PARTY_INCLUDES_END

static bool B64UrlDecode(const FString& In, TArray<uint8>& Out)
{
	// JWTs use unpadded base64url (RFC 7515 §2).
	FString S = In.Replace(TEXT("-"), TEXT("+")).Replace(TEXT("_"), TEXT("/"));
	while (S.Len() % 4) { S.AppendChar('='); }
	return FBase64::Decode(S, Out);
}

static TSharedPtr<FJsonObject> DecodeJsonPart(const FString& Part)
{
	TArray<uint8> Bytes;
	if (!B64UrlDecode(Part, Bytes)) { return nullptr; }
	FUTF8ToTCHAR Conv(reinterpret_cast<const ANSICHAR*>(Bytes.GetData()), Bytes.Num());
	TSharedPtr<FJsonObject> Obj;
	FJsonSerializer::Deserialize(TJsonReaderFactory<>::Create(FString(Conv.Length(), Conv.Get())), Obj);
	return Obj;
}

bool FKumiServerTokenVerifier::LoadJwks(const FString& Jwks, FString& OutError)
{
	TSharedPtr<FJsonObject> Set;
	if (!FJsonSerializer::Deserialize(TJsonReaderFactory<>::Create(Jwks), Set) || !Set.IsValid())
	{
		OutError = TEXT("JWKS is not valid JSON");
		return false;
	}
	TMap<FString, FKey> NewKeys;
	for (const TSharedPtr<FJsonValue>& V : Set->GetArrayField(TEXT("keys")))
	{
		const TSharedPtr<FJsonObject> K = V->AsObject();
		const FString Kid = K->GetStringField(TEXT("kid"));
		const FString Kty = K->GetStringField(TEXT("kty"));
		const FString Crv = K->GetStringField(TEXT("crv"));
		FKey Key;
		if (Kty == TEXT("OKP") && Crv == TEXT("Ed25519"))
		{
			Key.Alg = TEXT("EdDSA");
			if (!B64UrlDecode(K->GetStringField(TEXT("x")), Key.X) || Key.X.Num() != 32) { OutError = FString::Printf(TEXT("JWKS key %s: bad Ed25519 x"), *Kid); return false; }
		}
		else if (Kty == TEXT("EC") && Crv == TEXT("P-256"))
		{
			Key.Alg = TEXT("ES256");
			if (!B64UrlDecode(K->GetStringField(TEXT("x")), Key.X) || !B64UrlDecode(K->GetStringField(TEXT("y")), Key.Y)) { OutError = FString::Printf(TEXT("JWKS key %s: bad P-256 x/y"), *Kid); return false; }
		}
		else
		{
			// RS256 works the same way with EVP_PKEY_RSA and EVP_sha256(); left out to keep this short.
			OutError = FString::Printf(TEXT("JWKS key %s: kty %s crv %s not supported here"), *Kid, *Kty, *Crv);
			return false;
		}
		NewKeys.Add(Kid, MoveTemp(Key));
	}
	Keys = MoveTemp(NewKeys); // rotation: reload the JWKS; tokens name their key by kid
	return true;
}

bool FKumiServerTokenVerifier::VerifySignature(const FKey& Key, const FString& SigningInput, const TArray<uint8>& Sig) const
{
	const FTCHARToUTF8 Msg(*SigningInput);
	bool bOk = false;
	EVP_MD_CTX* Ctx = EVP_MD_CTX_new();
	if (Key.Alg == TEXT("EdDSA"))
	{
		EVP_PKEY* Pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Key.X.GetData(), Key.X.Num());
		bOk = Pub && Sig.Num() == 64 && EVP_DigestVerifyInit(Ctx, nullptr, nullptr, nullptr, Pub) == 1 &&
			EVP_DigestVerify(Ctx, Sig.GetData(), Sig.Num(), reinterpret_cast<const uint8*>(Msg.Get()), Msg.Length()) == 1;
		EVP_PKEY_free(Pub);
	}
	else if (Key.Alg == TEXT("ES256") && Sig.Num() == 64)
	{
		// JWS ES256 signatures are r||s (32 bytes each); OpenSSL wants DER.
		EC_KEY* Ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
		BIGNUM* X = BN_bin2bn(Key.X.GetData(), Key.X.Num(), nullptr);
		BIGNUM* Y = BN_bin2bn(Key.Y.GetData(), Key.Y.Num(), nullptr);
		EVP_PKEY* Pub = EVP_PKEY_new();
		ECDSA_SIG* EcSig = ECDSA_SIG_new();
		ECDSA_SIG_set0(EcSig, BN_bin2bn(Sig.GetData(), 32, nullptr), BN_bin2bn(Sig.GetData() + 32, 32, nullptr));
		uint8* Der = nullptr;
		const int DerLen = i2d_ECDSA_SIG(EcSig, &Der);
		bOk = EC_KEY_set_public_key_affine_coordinates(Ec, X, Y) == 1 && EVP_PKEY_set1_EC_KEY(Pub, Ec) == 1 && DerLen > 0 &&
			EVP_DigestVerifyInit(Ctx, nullptr, EVP_sha256(), nullptr, Pub) == 1 &&
			EVP_DigestVerify(Ctx, Der, DerLen, reinterpret_cast<const uint8*>(Msg.Get()), Msg.Length()) == 1;
		OPENSSL_free(Der);
		ECDSA_SIG_free(EcSig);
		EVP_PKEY_free(Pub);
		BN_free(X);
		BN_free(Y);
		EC_KEY_free(Ec);
	}
	EVP_MD_CTX_free(Ctx);
	return bOk;
}

bool FKumiServerTokenVerifier::Verify(const FString& Token, FKumiServerClaims& Out, FString& OutError)
{
	if (Token.IsEmpty()) { OutError = TEXT("no ?token= option: join with the server token from your assignment"); return false; }
	if (Token.Len() > MaxTokenBytes) { OutError = TEXT("token too large"); return false; }
	TArray<FString> Parts;
	if (Token.ParseIntoArray(Parts, TEXT("."), /*CullEmpty=*/false) != 3) { OutError = TEXT("token is not a JWS compact serialization (3 dot-separated parts)"); return false; }

	const TSharedPtr<FJsonObject> Header = DecodeJsonPart(Parts[0]);
	if (!Header.IsValid()) { OutError = TEXT("token header is not base64url JSON"); return false; }
	const FString Typ = Header->GetStringField(TEXT("typ"));
	const FString Kid = Header->GetStringField(TEXT("kid"));
	const FString Alg = Header->GetStringField(TEXT("alg"));
	if (Typ != TEXT("kumi-server+jwt")) { OutError = FString::Printf(TEXT("typ %s is not a server token; present the server token from the assignment, not the player token"), *Typ); return false; }
	const FKey* Key = Keys.Find(Kid);
	if (!Key) { OutError = FString::Printf(TEXT("unknown kid %s: reload the JWKS (key rotated?)"), *Kid); return false; }
	// The allow-list is per key: exactly the key's own algorithm. This refuses "none" and HS256
	// (a public key used as an HMAC secret) without ever looking at the signature.
	if (Alg != Key->Alg) { OutError = FString::Printf(TEXT("alg %s not allowed for key %s (want %s)"), *Alg, *Kid, *Key->Alg); return false; }

	TArray<uint8> Sig;
	if (!B64UrlDecode(Parts[2], Sig) || !VerifySignature(*Key, Parts[0] + TEXT(".") + Parts[1], Sig))
	{
		OutError = TEXT("bad signature");
		return false;
	}

	// Only now is the payload trusted.
	const TSharedPtr<FJsonObject> Claims = DecodeJsonPart(Parts[1]);
	if (!Claims.IsValid()) { OutError = TEXT("token payload is not base64url JSON"); return false; }
	if (Claims->GetStringField(TEXT("iss")) != Issuer) { OutError = FString::Printf(TEXT("issuer %s, want %s"), *Claims->GetStringField(TEXT("iss")), *Issuer); return false; }

	// aud may be a string or an array (RFC 7519 §4.1.3); it must name this server.
	TArray<FString> Aud;
	if (!Claims->TryGetStringArrayField(TEXT("aud"), Aud)) { Aud.Add(Claims->GetStringField(TEXT("aud"))); }
	if (!Aud.Contains(ServerName)) { OutError = FString::Printf(TEXT("token is for another server (aud %s, this is %s)"), *FString::Join(Aud, TEXT(",")), *ServerName); return false; }

	const FDateTime Now = FDateTime::UtcNow();
	int64 Exp = 0, Nbf = 0;
	if (!Claims->TryGetNumberField(TEXT("exp"), Exp)) { OutError = TEXT("token has no exp"); return false; }
	const FDateTime ExpAt = FDateTime::FromUnixTimestamp(Exp);
	if (Now > ExpAt + Leeway) { OutError = TEXT("token expired: file a new ticket"); return false; }
	if (Claims->TryGetNumberField(TEXT("nbf"), Nbf) && Now + Leeway < FDateTime::FromUnixTimestamp(Nbf)) { OutError = TEXT("token not valid yet (clock skew?)"); return false; }

	Out.PlayerId = Claims->GetStringField(TEXT("sub"));
	Out.SessionId = Claims->GetStringField(TEXT("sid"));
	Out.TokenId = Claims->GetStringField(TEXT("jti"));
	Out.Expiry = ExpAt;
	if (Out.PlayerId.IsEmpty() || Out.SessionId.IsEmpty() || Out.TokenId.IsEmpty()) { OutError = TEXT("token lacks sub, sid or jti"); return false; }

	// Single use: forget jtis once they could no longer pass the exp check anyway.
	for (auto It = UsedJtis.CreateIterator(); It; ++It)
	{
		if (Now > It.Value() + Leeway) { It.RemoveCurrent(); }
	}
	if (UsedJtis.Contains(Out.TokenId)) { OutError = TEXT("token already used: file a new ticket"); return false; }
	UsedJtis.Add(Out.TokenId, ExpAt);
	return true;
}
